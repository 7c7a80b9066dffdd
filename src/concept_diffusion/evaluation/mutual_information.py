"""Discrete mutual information between binned codes and factors, shared by MIG and modularity.

As disentanglement_lib: each code is binned with `np.histogram`'s equal-width edges (20 bins by
default; `concept_diffusion.data.labelled.histogram_bins`, which also bins continuous factors) and
mutual information is sklearn's `mutual_info_score` in nats.
"""

import numpy as np
from sklearn.metrics import mutual_info_score

from concept_diffusion.data.labelled import histogram_bins


def histogram_discretize(codes, num_bins=20):
    """Bin each column of codes (n, d) into `num_bins` equal-width bins over its own range.

    The result keeps the codes' dtype, as in disentanglement_lib (bin indices 1..num_bins).

    Example:
        >>> histogram_discretize(np.array([[0.0], [0.5], [1.0]]), num_bins=2).ravel()
        array([1., 2., 2.])
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}.")
    discretized = np.zeros_like(codes)
    for i in range(codes.shape[1]):
        discretized[:, i] = histogram_bins(codes[:, i], num_bins)
    return discretized


def discrete_mutual_info(discrete_codes, factors):
    """Mutual information matrix (d, k) in nats between binned codes (n, d) and factors (n, k)."""
    matrix = np.zeros([discrete_codes.shape[1], factors.shape[1]])
    for i in range(discrete_codes.shape[1]):
        for j in range(factors.shape[1]):
            matrix[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i])
    return matrix


def discrete_entropy(factors):
    """Entropy in nats of each factor column of (n, k)."""
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])
