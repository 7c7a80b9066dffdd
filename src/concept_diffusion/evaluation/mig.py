"""MIG, the Mutual Information Gap.

Chen et al., "Isolating Sources of Disentanglement in Variational Autoencoders", NeurIPS 2018
(https://arxiv.org/abs/1802.04942), with disentanglement_lib's protocol: 10,000 points, each
code binned into 20 equal-width bins, gap between the two most informative codes divided by the
factor's entropy, averaged over factors.
"""

import numpy as np

from concept_diffusion.evaluation.mutual_information import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
)
from concept_diffusion.evaluation.sampling import check_codes, check_count, check_factors, sample_codes_and_factors


def compute_mig(ground_truth_data, representation_fn, random_state, num_train=10000, batch_size=16, num_bins=20):
    """MIG of `representation_fn` on `ground_truth_data` (disentanglement_lib's `compute_mig`).

    Returns `{"discrete_mig": float}`.

    Example:
        >>> compute_mig(data, encode, np.random.RandomState(0), num_train=2000)["discrete_mig"]
    """
    check_count(num_train, "num_train", 2)
    codes, factors = sample_codes_and_factors(ground_truth_data, representation_fn, num_train, random_state, batch_size)
    return mig_from_codes(codes, factors, num_bins=num_bins)


def mig_from_codes(codes, factors, num_bins=20):
    """MIG from codes (n, d) and integer factors (n, k).

    A factor that takes a single value has zero entropy; its gap is 0/0 and the result is NaN,
    as in disentanglement_lib: sample enough points that every factor varies.

    Example:
        >>> mig_from_codes(factors.astype(float), factors)["discrete_mig"]
        1.0
    """
    codes = check_codes(codes, len(codes), "codes")
    factors = check_factors(factors, len(codes), "factors")
    if codes.shape[1] < 2:
        raise ValueError(
            f"MIG needs at least two codes (it is the gap between the best and second-best code), "
            f"got {codes.shape[1]}."
        )
    return {"discrete_mig": float(mig_from_mutual_info(discrete_mutual_info(histogram_discretize(codes, num_bins), factors), factors))}


def mig_from_mutual_info(mutual_info, factors):
    """MIG from a mutual information matrix (d, k) and the factors (n, k) it was measured on."""
    entropy = discrete_entropy(factors)
    sorted_mutual_info = np.sort(mutual_info, axis=0)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(np.divide(sorted_mutual_info[0, :] - sorted_mutual_info[1, :], entropy[:]))
