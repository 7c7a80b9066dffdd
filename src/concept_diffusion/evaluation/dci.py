"""DCI: disentanglement, completeness and informativeness.

Eastwood and Williams, "A Framework for the Quantitative Evaluation of Disentangled
Representations", ICLR 2018 (https://openreview.net/forum?id=By-7dz-AZ), with
disentanglement_lib's protocol: one GradientBoostingClassifier (sklearn defaults) per factor,
importances = |feature_importances_|, informativeness = prediction accuracy.

Backends: `backend="numba"` (default) fits `gbt.GradientBoostedTrees`, a re-implementation of
sklearn's classifier that gives the same trees, importances and predictions (equal to sklearn
1.9's, checked bit for bit in tests/test_gbt.py) in seconds instead of minutes: every code is
sorted once for all factors. `backend="sklearn"` fits sklearn's own GradientBoostingClassifier,
the reference. `fast=True` fits HistGradientBoosting instead: close values, not equal ones.

Exactness: sklearn's trees draw one seed each from `estimator_random_state` (None: numpy's global
RNG, as disentanglement_lib), which orders features when two splits are exactly equally good.
disentanglement_lib never seeds that RNG, so its DCI values depend on the global state at call
time. To reproduce a reference run exactly, call `np.random.seed(s)` before the reference and pass
`estimator_random_state=np.random.RandomState(s)` here (or seed the global RNG the same way
before both). `evaluate(...)` passes `RandomState(seed)`, so its values are reproducible.
"""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.stats

from concept_diffusion.evaluation.estimator_rng import fork_random_states, resolve_n_jobs
from concept_diffusion.evaluation.sampling import (
    check_codes,
    check_count,
    check_factors,
    sample_codes_and_factors,
)

_GBC_NUM_STAGES = 100  # sklearn's GradientBoostingClassifier default n_estimators


def compute_dci(
    ground_truth_data,
    representation_fn,
    random_state,
    num_train=10000,
    num_test=5000,
    batch_size=16,
    fast=False,
    estimator_random_state=None,
    n_jobs=None,
    backend="numba",
):
    """DCI scores of `representation_fn` on `ground_truth_data` (disentanglement_lib's `compute_dci`).

    Returns a dict with `disentanglement`, `completeness`, `informativeness_train` and
    `informativeness_test`. `backend`: "numba" (default; the reference's values, fast) or
    "sklearn" (the reference itself, minutes at full size). `fast=True` fits
    HistGradientBoostingClassifier instead (values close to but not equal to the reference).

    Example:
        >>> scores = compute_dci(data, encode, np.random.RandomState(0), num_train=1000, num_test=500)
        >>> scores["disentanglement"]
    """
    check_count(num_train, "num_train", 2)
    check_count(num_test, "num_test", 1)
    codes_train, factors_train = sample_codes_and_factors(
        ground_truth_data, representation_fn, num_train, random_state, batch_size
    )
    codes_test, factors_test = sample_codes_and_factors(
        ground_truth_data, representation_fn, num_test, random_state, batch_size
    )
    return dci_from_codes(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        fast=fast,
        estimator_random_state=estimator_random_state,
        n_jobs=n_jobs,
        backend=backend,
    )


def dci_from_codes(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    fast=False,
    estimator_random_state=None,
    n_jobs=None,
    backend="numba",
):
    """DCI scores from codes (n, d) and integer factors (n, k), split into train and test sets.

    `backend` picks the gradient-boosted trees: "numba" (default) or "sklearn" (same values).

    Example:
        >>> dci_from_codes(codes[:800], factors[:800], codes[800:], factors[800:])["completeness"]
    """
    codes_train = check_codes(codes_train, len(codes_train), "codes_train")
    factors_train = check_factors(factors_train, len(codes_train), "factors_train")
    codes_test = check_codes(codes_test, len(codes_test), "codes_test")
    factors_test = check_factors(factors_test, len(codes_test), "factors_test")
    if codes_train.shape[1] < 2 or factors_train.shape[1] < 2:
        raise ValueError(
            f"DCI needs at least two codes and two factors (its entropies are taken in base d and base k), "
            f"got {codes_train.shape[1]} codes and {factors_train.shape[1]} factors."
        )
    if codes_test.shape[1] != codes_train.shape[1] or factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError(
            f"train and test sets must have the same columns, got codes {codes_train.shape[1]} vs "
            f"{codes_test.shape[1]} and factors {factors_train.shape[1]} vs {factors_test.shape[1]}."
        )
    if len(codes_train) < 2:
        raise ValueError(f"DCI needs at least 2 training points, got {len(codes_train)}.")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {backend!r}.")
    if fast:
        importance_matrix, train_accuracy, test_accuracy = _fit_hist_gbt(
            codes_train, factors_train, codes_test, factors_test, estimator_random_state, resolve_n_jobs(n_jobs)
        )
    else:
        importance_matrix, train_accuracy, test_accuracy = _fit_gbt(
            codes_train, factors_train, codes_test, factors_test, estimator_random_state, resolve_n_jobs(n_jobs),
            backend,
        )
    return {
        "informativeness_train": float(train_accuracy),
        "informativeness_test": float(test_accuracy),
        "disentanglement": float(disentanglement(importance_matrix)),
        "completeness": float(completeness(importance_matrix)),
    }


def _sklearn_trees(codes_train):
    from sklearn.ensemble import GradientBoostingClassifier

    return lambda labels, random_state: GradientBoostingClassifier(random_state=random_state).fit(codes_train, labels)


def _numba_trees(codes_train):
    from concept_diffusion.evaluation.gbt import GradientBoostedTrees, presort

    presorted = presort(codes_train)  # every factor's fit uses the same sorted codes
    return lambda labels, random_state: GradientBoostedTrees(random_state=random_state).fit(
        codes_train, labels, presorted
    )


_BACKENDS = {"numba": _numba_trees, "sklearn": _sklearn_trees}


def _exact_backend(backend: str) -> str:
    """`backend`, or "sklearn" (with a warning) when the numba trees would not equal the installed sklearn's."""
    from concept_diffusion.evaluation.gbt import EXACT_SKLEARN_MINOR, installed_sklearn_is_exact

    if backend != "numba" or installed_sklearn_is_exact():
        return backend
    import sklearn

    exact = ".".join(map(str, EXACT_SKLEARN_MINOR))
    warnings.warn(
        f"DCI's numba trees equal scikit-learn {exact}.x's, but scikit-learn {sklearn.__version__} is installed: "
        f"using backend='sklearn' (the reference itself, slower). Install scikit-learn=={exact}.* for the fast exact path.",
        stacklevel=3,
    )
    return "sklearn"


def _split_gains(model, num_codes: int) -> np.ndarray:
    """Total split gain per code over the trees of a fitted HistGradientBoostingClassifier.

    sklearn has no public accessor for its histogram trees, so this reads the private `_predictors`
    (lists of TreePredictor with a `nodes` record array); a future sklearn that changes them fails
    here with a clear message instead of giving a wrong number.
    """
    gains = np.zeros(num_codes)
    try:
        for stage in model._predictors:
            for predictor in stage:
                splits = predictor.nodes[predictor.nodes["is_leaf"] == 0]
                np.add.at(gains, splits["feature_idx"], splits["gain"])
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as error:
        import sklearn

        raise RuntimeError(
            f"fast DCI reads the split gains of HistGradientBoostingClassifier's trees (the private `_predictors`), "
            f"which scikit-learn {sklearn.__version__} lays out differently ({error}): use fast=False, or scikit-learn 1.9.*"
        ) from error
    return gains


def _fit_gbt(codes_train, factors_train, codes_test, factors_test, estimator_random_state, n_jobs, backend):
    """Importance matrix (d, k) and mean accuracies of one GBC per factor, fitted in parallel."""
    num_factors = factors_train.shape[1]
    num_classes = [len(np.unique(factors_train[:, j])) for j in range(num_factors)]
    if min(num_classes) < 2:
        raise ValueError(
            f"every factor must take at least two values in the DCI training set, got {num_classes} "
            "distinct values per factor: sample more points (num_train)."
        )
    trees_per_fit = [_GBC_NUM_STAGES * (n if n > 2 else 1) for n in num_classes]
    forks = fork_random_states(estimator_random_state, trees_per_fit)
    fit = _BACKENDS[_exact_backend(backend)](codes_train)

    def fit_factor(j):
        model = fit(factors_train[:, j], forks[j])
        return (
            np.abs(model.feature_importances_),
            np.mean(model.predict(codes_train) == factors_train[:, j]),
            np.mean(model.predict(codes_test) == factors_test[:, j]),
        )

    # The largest factors first, so the longest fits do not start last.
    order = sorted(range(num_factors), key=lambda j: -trees_per_fit[j])
    with ThreadPoolExecutor(max_workers=min(n_jobs, num_factors)) as pool:
        results = dict(zip(order, pool.map(fit_factor, order)))
    return _collect(results, codes_train.shape[1], num_factors)


def _fit_hist_gbt(codes_train, factors_train, codes_test, factors_test, estimator_random_state, n_jobs):
    """Like `_fit_gbt` with HistGradientBoostingClassifier; importance = total split gain per code.

    HistGradientBoosting has no impurity importances; the summed split gains of its trees measure
    the same thing (how much each code reduces the loss) and are normalised the same way.
    Each fit gets one OpenMP thread and the factors run in parallel instead: with its default of
    every core, fits on a machine busy with training were measured 300 times slower (threads
    spinning while they wait for each other).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    num_factors = factors_train.shape[1]
    num_codes = codes_train.shape[1]
    seed = np.random.RandomState(0) if estimator_random_state is None else estimator_random_state
    seeds = [seed.randint(np.iinfo(np.int32).max) for _ in range(num_factors)]

    def fit_factor(j):
        # Same shape as sklearn's GBC defaults: 100 stages, learning rate 0.1, shallow trees.
        model = HistGradientBoostingClassifier(
            max_iter=_GBC_NUM_STAGES, learning_rate=0.1, max_depth=3, early_stopping=False, random_state=seeds[j]
        )
        with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP settings are per thread
            model.fit(codes_train, factors_train[:, j])
            train_accuracy = np.mean(model.predict(codes_train) == factors_train[:, j])
            test_accuracy = np.mean(model.predict(codes_test) == factors_test[:, j])
        gains = _split_gains(model, num_codes)
        importance = gains / gains.sum() if gains.sum() > 0 else gains
        return importance, train_accuracy, test_accuracy

    with ThreadPoolExecutor(max_workers=min(n_jobs, num_factors)) as pool:
        results = dict(zip(range(num_factors), pool.map(fit_factor, range(num_factors))))
    return _collect(results, num_codes, num_factors)


def _collect(results, num_codes, num_factors):
    importance_matrix = np.zeros((num_codes, num_factors), dtype=np.float64)
    train_accuracy, test_accuracy = [], []
    for j in range(num_factors):
        importance_matrix[:, j], train, test = results[j]
        train_accuracy.append(train)
        test_accuracy.append(test)
    return importance_matrix, np.mean(train_accuracy), np.mean(test_accuracy)


def disentanglement_per_code(importance_matrix):
    """1 - entropy (base k) of each code's importance over the k factors."""
    return 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])


def disentanglement(importance_matrix):
    """Disentanglement: per-code scores weighted by each code's share of the total importance.

    Example:
        >>> disentanglement(np.eye(3))
        1.0
    """
    per_code = disentanglement_per_code(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return np.sum(per_code * code_importance)


def completeness_per_factor(importance_matrix):
    """1 - entropy (base d) of each factor's importance over the d codes."""
    return 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])


def completeness(importance_matrix):
    """Completeness: per-factor scores weighted by each factor's share of the total importance.

    Example:
        >>> completeness(np.eye(3))
        1.0
    """
    per_factor = completeness_per_factor(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return np.sum(per_factor * factor_importance)
