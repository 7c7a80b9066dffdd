"""GradientBoostedTrees against sklearn's GradientBoostingClassifier: equal bit for bit.

Each case fits both on the same small data with the same seed and compares the fitted model
exactly (`==`, not a tolerance): feature_importances_, decision_function and predict, on the
training codes and on new codes.
"""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from concept_diffusion.evaluation.dci import dci_from_codes
from concept_diffusion.evaluation.gbt import GradientBoostedTrees, presort


def _continuous(rng, n=160):
    return rng.randn(n, 4), rng.randint(0, 4, n)


def _duplicated_and_constant_columns(rng, n=160):
    codes = rng.randn(n, 3)
    codes = np.concatenate([codes, codes[:, :1], np.full((n, 1), 0.5)], axis=1)  # a redundant copy, a constant
    return codes, rng.randint(0, 3, n)


def _discrete_codes(rng, n=200):
    # Ties everywhere, between samples with different codes and labels: sklearn's sort order
    # among them decides the last bits of its sums, and the port must sort like it.
    codes = rng.randint(0, 3, (n, 4)) / 2.0 + rng.randn(n, 4) * 1e-3
    return np.round(codes, 2), rng.randint(0, 3, n)


def _duplicated_rows(rng, n=180):
    rows = rng.randint(0, 40, n)
    return rng.randn(40, 3)[rows], rows % 3


def _binary(rng, n=150):
    codes = rng.randn(n, 3)
    return codes, (codes[:, 0] + 0.5 * rng.randn(n) > 0).astype(int)


def _rare_class(rng, n=150):
    labels = rng.randint(0, 3, n)
    labels[:3] = 7  # three samples of a fourth class, labels that are not 0..k-1
    return rng.randn(n, 3), labels


def _near_ties(rng, n=150):
    # values closer than sklearn's FEATURE_THRESHOLD (1e-7) are never split apart
    base = rng.randint(0, 5, (n, 3)).astype(np.float64)
    return base + rng.randint(0, 2, (n, 3)) * 5e-8, rng.randint(0, 3, n)


CASES = {
    "continuous": _continuous,
    "duplicated_and_constant_columns": _duplicated_and_constant_columns,
    "discrete_codes": _discrete_codes,
    "duplicated_rows": _duplicated_rows,
    "binary": _binary,
    "rare_class": _rare_class,
    "near_ties": _near_ties,
}


def _assert_same_model(ours, reference, codes, new_codes):
    assert np.array_equal(ours.classes_, reference.classes_)
    np.testing.assert_array_equal(ours.feature_importances_, reference.feature_importances_)
    for X in (codes, new_codes):
        np.testing.assert_array_equal(ours.decision_function(X), reference.decision_function(X))
        np.testing.assert_array_equal(ours.predict(X), reference.predict(X))


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_sklearn_exactly(case):
    rng = np.random.RandomState(sorted(CASES).index(case))
    codes, labels = CASES[case](rng)
    new_codes = codes + rng.randn(*codes.shape) * 0.3
    kwargs = dict(n_estimators=20, max_depth=3)
    reference = GradientBoostingClassifier(random_state=np.random.RandomState(5), **kwargs).fit(codes, labels)
    ours = GradientBoostedTrees(random_state=np.random.RandomState(5), **kwargs).fit(codes, labels)
    _assert_same_model(ours, reference, codes, new_codes)


def test_matches_sklearn_defaults_and_other_depths():
    rng = np.random.RandomState(11)
    codes, labels = _discrete_codes(rng, n=120)
    reference = GradientBoostingClassifier(random_state=3).fit(codes, labels)
    ours = GradientBoostedTrees(random_state=3).fit(codes, labels)
    _assert_same_model(ours, reference, codes, codes[::-1] + 0.25)
    for depth in (1, 5):
        reference = GradientBoostingClassifier(n_estimators=10, max_depth=depth, learning_rate=0.3, random_state=3)
        ours = GradientBoostedTrees(n_estimators=10, max_depth=depth, learning_rate=0.3, random_state=3)
        _assert_same_model(ours.fit(codes, labels), reference.fit(codes, labels), codes, codes + 0.1)


def test_close_decisions_are_resorted_like_sklearn():
    # Codes whose ties make some split decisions too close to settle from presorted orders: those
    # nodes are searched again in sklearn's own sort order, and the model is still equal.
    rng = np.random.RandomState(1)
    codes = np.round(rng.randint(0, 3, (200, 4)) / 2.0 + rng.randn(200, 4) * 1e-3, 2)
    labels = rng.randint(0, 3, 200)
    ours = GradientBoostedTrees(n_estimators=20, random_state=1).fit(codes, labels)
    assert ours.n_nodes_resorted_ > 0
    reference = GradientBoostingClassifier(n_estimators=20, random_state=1).fit(codes, labels)
    _assert_same_model(ours, reference, codes, codes + 0.01)


def test_global_random_state_is_consumed_like_sklearn():
    rng = np.random.RandomState(2)
    codes, labels = _continuous(rng, n=80)
    np.random.seed(123)
    reference = GradientBoostingClassifier(n_estimators=5).fit(codes, labels)
    after_reference = np.random.random_sample()
    np.random.seed(123)
    ours = GradientBoostedTrees(n_estimators=5).fit(codes, labels)
    assert np.random.random_sample() == after_reference
    _assert_same_model(ours, reference, codes, codes)


def test_presorted_codes_are_shared_between_fits():
    rng = np.random.RandomState(3)
    codes = rng.randn(100, 3)
    factors = rng.randint(0, 3, (100, 2))
    presorted = presort(codes)
    for j in range(2):
        shared = GradientBoostedTrees(n_estimators=5, random_state=j).fit(codes, factors[:, j], presorted)
        alone = GradientBoostedTrees(n_estimators=5, random_state=j).fit(codes, factors[:, j])
        np.testing.assert_array_equal(shared.feature_importances_, alone.feature_importances_)
    with pytest.raises(ValueError, match="presort"):
        GradientBoostedTrees().fit(codes[:50], factors[:50, 0], presorted)


def test_bad_input_is_explained():
    codes = np.random.RandomState(0).randn(20, 2)
    with pytest.raises(ValueError, match="at least two classes"):
        GradientBoostedTrees().fit(codes, np.zeros(20))
    with pytest.raises(ValueError, match="one label per row"):
        GradientBoostedTrees().fit(codes, np.zeros(19))
    with pytest.raises(ValueError, match="finite"):
        GradientBoostedTrees().fit(np.full((20, 2), np.nan), np.arange(20) % 2)
    with pytest.raises(ValueError, match="random_state"):
        GradientBoostedTrees(random_state="seed").fit(codes, np.arange(20) % 2)
    with pytest.raises(ValueError, match="n_estimators"):
        GradientBoostedTrees(n_estimators=0)
    with pytest.raises(ValueError, match="not fitted"):
        GradientBoostedTrees().predict(codes)
    model = GradientBoostedTrees(n_estimators=2).fit(codes, np.arange(20) % 2)
    with pytest.raises(ValueError, match="shape"):
        model.predict(codes[:, :1])


def test_dci_backends_agree():
    rng = np.random.RandomState(4)
    factors = rng.randint(0, 4, (300, 2))
    codes = np.concatenate([factors + 0.1 * rng.randn(300, 2), rng.randn(300, 1)], axis=1)
    split = dict(codes_train=codes[:200], factors_train=factors[:200], codes_test=codes[200:], factors_test=factors[200:])
    numba = dci_from_codes(**split, estimator_random_state=np.random.RandomState(0), backend="numba")
    sklearn = dci_from_codes(**split, estimator_random_state=np.random.RandomState(0), backend="sklearn")
    assert numba == sklearn
    with pytest.raises(ValueError, match="backend"):
        dci_from_codes(**split, backend="xgboost")
