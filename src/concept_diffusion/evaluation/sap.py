"""SAP, the Separated Attribute Predictability score.

Kumar et al., "Variational Inference of Disentangled Latent Concepts from Unlabeled Observations",
ICLR 2018 (https://openreview.net/forum?id=H1kG7GZAW), Section 3, with disentanglement_lib's
protocol for discrete factors: for every (code, factor) pair a LinearSVC(C=0.01,
class_weight="balanced") predicts the factor from that one code; the score is the mean over
factors of the gap between the two best codes' test accuracies.

Each LinearSVC draws a liblinear seed from `estimator_random_state` (None: numpy's global RNG, as
disentanglement_lib); see `concept_diffusion.evaluation.dci` for how to reproduce a reference run.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from concept_diffusion.evaluation.estimator_rng import fork_random_states, resolve_n_jobs
from concept_diffusion.evaluation.sampling import check_codes, check_count, check_factors, sample_codes_and_factors


def compute_sap(
    ground_truth_data,
    representation_fn,
    random_state,
    num_train=10000,
    num_test=5000,
    batch_size=16,
    continuous_factors=False,
    estimator_random_state=None,
    n_jobs=None,
):
    """SAP score of `representation_fn` on `ground_truth_data` (disentanglement_lib's `compute_sap`).

    Returns `{"SAP_score": float}`.

    Example:
        >>> compute_sap(data, encode, np.random.RandomState(0), num_train=1000, num_test=500)["SAP_score"]
    """
    check_count(num_train, "num_train", 2)
    check_count(num_test, "num_test", 1)
    codes, factors = sample_codes_and_factors(ground_truth_data, representation_fn, num_train, random_state, batch_size)
    codes_test, factors_test = sample_codes_and_factors(ground_truth_data, representation_fn, num_test, random_state, batch_size)
    return sap_from_codes(codes, factors, codes_test, factors_test, continuous_factors, estimator_random_state, n_jobs)


def sap_from_codes(
    codes_train, factors_train, codes_test, factors_test, continuous_factors=False, estimator_random_state=None, n_jobs=None
):
    """SAP score from codes (n, d) and factors (n, k), train and test sets.

    With `continuous_factors=True` the score matrix is the squared correlation on the training
    set, and the test set is not used.

    Example:
        >>> sap_from_codes(codes[:800], factors[:800], codes[800:], factors[800:])["SAP_score"]
    """
    codes_train = check_codes(codes_train, len(codes_train), "codes_train")
    factors_train = check_factors(factors_train, len(codes_train), "factors_train")
    codes_test = check_codes(codes_test, len(codes_test), "codes_test")
    factors_test = check_factors(factors_test, len(codes_test), "factors_test")
    if codes_train.shape[1] < 2:
        raise ValueError(
            f"SAP needs at least two codes (it is the gap between the best and second-best code), "
            f"got {codes_train.shape[1]}."
        )
    if continuous_factors:
        score_matrix = _correlation_scores(codes_train, factors_train)
    else:
        score_matrix = _classification_scores(
            codes_train, factors_train, codes_test, factors_test, estimator_random_state, resolve_n_jobs(n_jobs)
        )
    sorted_scores = np.sort(score_matrix, axis=0)
    return {"SAP_score": float(np.mean(sorted_scores[-1, :] - sorted_scores[-2, :]))}


def _correlation_scores(codes, factors):
    score_matrix = np.zeros([codes.shape[1], factors.shape[1]])
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            covariance = np.cov(codes[:, i], factors[:, j], ddof=1)
            if covariance[0, 0] > 1e-12:
                score_matrix[i, j] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
    return score_matrix


def _classification_scores(codes_train, factors_train, codes_test, factors_test, estimator_random_state, n_jobs):
    from sklearn.svm import LinearSVC

    pairs = [(i, j) for i in range(codes_train.shape[1]) for j in range(factors_train.shape[1])]
    forks = fork_random_states(estimator_random_state, [1] * len(pairs))

    def accuracy(pair_index):
        i, j = pairs[pair_index]
        classifier = LinearSVC(C=0.01, class_weight="balanced", random_state=forks[pair_index])
        classifier.fit(codes_train[:, i : i + 1], factors_train[:, j])
        return np.mean(classifier.predict(codes_test[:, i : i + 1]) == factors_test[:, j])

    score_matrix = np.zeros([codes_train.shape[1], factors_train.shape[1]])
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for (i, j), value in zip(pairs, pool.map(accuracy, range(len(pairs)))):
            score_matrix[i, j] = value
    return score_matrix
