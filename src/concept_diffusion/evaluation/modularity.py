"""Modularity and explicitness.

Ridgeway and Mozer, "Learning Deep Disentangled Embeddings With the F-Statistic Loss", NeurIPS
2018 (https://arxiv.org/abs/1802.05312), with disentanglement_lib's protocol: modularity from the
binned mutual information (20 bins) on the training points; explicitness = macro ROC-AUC of a
LogisticRegression per factor on standardised codes (train and test).

One deliberate difference: disentanglement_lib divides by each code's standard deviation, so a
constant ("dead") code makes its logistic regression fail on NaN. Here a constant code is
standardised to 0 instead; every other value is the reference's.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from concept_diffusion.evaluation.estimator_rng import resolve_n_jobs
from concept_diffusion.evaluation.mutual_information import discrete_mutual_info, histogram_discretize
from concept_diffusion.evaluation.sampling import check_codes, check_count, check_factors, sample_codes_and_factors


def compute_modularity_explicitness(
    ground_truth_data, representation_fn, random_state, num_train=10000, num_test=5000, batch_size=16, num_bins=20, n_jobs=None
):
    """Modularity and explicitness of `representation_fn` (disentanglement_lib's `compute_modularity_explicitness`).

    Returns `modularity_score`, `explicitness_score_train` and `explicitness_score_test`.

    Example:
        >>> compute_modularity_explicitness(data, encode, np.random.RandomState(0), 1000, 500)["modularity_score"]
    """
    check_count(num_train, "num_train", 2)
    check_count(num_test, "num_test", 1)
    codes, factors = sample_codes_and_factors(ground_truth_data, representation_fn, num_train, random_state, batch_size)
    codes_test, factors_test = sample_codes_and_factors(ground_truth_data, representation_fn, num_test, random_state, batch_size)
    return modularity_explicitness_from_codes(codes, factors, codes_test, factors_test, num_bins, n_jobs)


def modularity_explicitness_from_codes(codes_train, factors_train, codes_test, factors_test, num_bins=20, n_jobs=None):
    """Modularity (from the training set) and explicitness (train and test) from codes and factors.

    Example:
        >>> modularity_explicitness_from_codes(codes[:800], factors[:800], codes[800:], factors[800:])
    """
    codes_train = check_codes(codes_train, len(codes_train), "codes_train")
    factors_train = check_factors(factors_train, len(codes_train), "factors_train")
    codes_test = check_codes(codes_test, len(codes_test), "codes_test")
    factors_test = check_factors(factors_test, len(codes_test), "factors_test")
    if factors_train.shape[1] < 2:
        raise ValueError(f"modularity needs at least two factors, got {factors_train.shape[1]}.")
    mutual_info = discrete_mutual_info(histogram_discretize(codes_train, num_bins), factors_train)
    scores = {"modularity_score": float(modularity(mutual_info))}
    scores.update(explicitness(codes_train, factors_train, codes_test, factors_test, n_jobs))
    return scores


def modularity(mutual_info):
    """Mean over codes of 1 - (how much of a code's squared MI is outside its best factor).

    Codes with no information about any factor score 0. Example:
        >>> modularity(np.eye(3))
        1.0
    """
    squared = np.square(mutual_info)
    max_squared = np.max(squared, axis=1)
    numerator = np.sum(squared, axis=1) - max_squared
    denominator = max_squared * (squared.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - numerator / denominator
    score[max_squared == 0.0] = 0.0
    return np.mean(score)


def explicitness(codes_train, factors_train, codes_test, factors_test, n_jobs=None):
    """Mean ROC-AUC over factors of a LogisticRegression on standardised codes, train and test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import MultiLabelBinarizer

    # Statistics in the codes' dtype, along the points axis, as the reference computes them.
    mean = np.mean(codes_train.T, axis=1)
    stddev = np.std(codes_train.T, axis=1)
    stddev = np.where(stddev == 0, np.ones_like(stddev), stddev)
    train = (codes_train.T - mean[:, np.newaxis]) / stddev[:, np.newaxis]
    test = (codes_test.T - mean[:, np.newaxis]) / stddev[:, np.newaxis]

    for j in range(factors_train.shape[1]):
        # The reference one-hot encodes train and test apart, so their value sets must agree.
        only_train = np.setdiff1d(factors_train[:, j], factors_test[:, j])
        only_test = np.setdiff1d(factors_test[:, j], factors_train[:, j])
        if only_train.size or only_test.size:
            raise ValueError(
                f"explicitness: factor {j} takes values {only_train.tolist()[:5]} only in the training points and "
                f"{only_test.tolist()[:5]} only in the test points; both samples must contain every value: "
                "draw more points (num_train, num_test)."
            )

    def roc_auc(j):
        classifier = LogisticRegression().fit(train.T, factors_train[:, j])
        binarizer = MultiLabelBinarizer()
        roc_train = roc_auc_score(binarizer.fit_transform(factors_train[:, j : j + 1]), classifier.predict_proba(train.T))
        roc_test = roc_auc_score(binarizer.fit_transform(factors_test[:, j : j + 1]), classifier.predict_proba(test.T))
        return roc_train, roc_test

    with ThreadPoolExecutor(max_workers=resolve_n_jobs(n_jobs)) as pool:
        results = list(pool.map(roc_auc, range(factors_train.shape[1])))
    return {
        "explicitness_score_train": float(np.mean([train for train, _ in results])),
        "explicitness_score_test": float(np.mean([test for _, test in results])),
    }
