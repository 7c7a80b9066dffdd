"""Disentanglement metrics against disentanglement_lib's own numbers on tiny known cases.

REFERENCE holds values printed by disentanglement_lib's metric code (commit 86a644d, its
`evaluation/metrics/*.py` run unmodified with gin-config shims, outside this repository), on
the data and representations below, each metric starting from RandomState(0) after
np.random.seed(0). Our values must equal them to 1e-9.
"""

import numpy as np
import pytest

from concept_diffusion.evaluation import (
    completeness,
    compute_dci,
    compute_factor_vae,
    compute_mig,
    dci_from_codes,
    disentanglement,
    mig_from_codes,
    modularity_explicitness_from_codes,
    sap_from_codes,
)
from concept_diffusion.evaluation.estimator_rng import fork_random_states
from concept_diffusion.evaluation.evaluate import METRICS


class VectorData:
    """Observations are the scaled factor vector plus Gaussian noise drawn from random_state."""

    def __init__(self, factor_sizes=(3, 4, 5), noise=0.05):
        self.factor_sizes = list(factor_sizes)
        self.noise = noise
        self.factor_names = [f"f{i}" for i in range(len(factor_sizes))]
        self.observation_shape = (len(factor_sizes),)

    @property
    def num_factors(self):
        return len(self.factor_sizes)

    def sample_factors(self, num, random_state):
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factor_sizes):
            factors[:, i] = random_state.randint(size, size=num)
        return factors

    def sample_observations_from_factors(self, factors, random_state):
        x = factors.astype(np.float64) / (np.array(self.factor_sizes) - 1)
        if self.noise:
            x = x + self.noise * random_state.randn(*x.shape)
        return x.astype(np.float32)

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


ROTATION = np.linalg.qr(np.random.RandomState(7).randn(3, 3))[0].astype(np.float32)
REPRESENTATIONS = {
    "perfect": lambda x: x,
    "permuted_flipped": lambda x: np.stack([-2.0 * x[:, 2], x[:, 0], -x[:, 1]], axis=1),
    "rotated": lambda x: x @ ROTATION,
    "redundant": lambda x: np.concatenate([x, x[:, :1]], axis=1),
    "dead_dims": lambda x: np.concatenate([x, np.zeros((len(x), 2), np.float32)], axis=1),
    "collapsed": lambda x: np.zeros((len(x), 3), np.float32),
}
SIZES = {
    "factor_vae": dict(batch_size=64, num_train=300, num_eval=150, num_variance_estimate=500),
    "dci": dict(num_train=400, num_test=200),
    "mig": dict(num_train=500),
    "sap": dict(num_train=400, num_test=200),
    "modularity": dict(num_train=400, num_test=200),
    "beta_vae": dict(batch_size=16, num_train=200, num_eval=100),
}
REFERENCE = {
    'perfect/factor_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'perfect/dci': {'informativeness_train': 1.0, 'informativeness_test': 0.995, 'disentanglement': 0.999999999520674, 'completeness': 0.999999999520674},
    'perfect/mig': {'discrete_mig': 0.9600184144362744},
    'perfect/sap': {'SAP_score': 0.22499999999999998},
    'perfect/modularity': {'modularity_score': 0.9973316730641462, 'explicitness_score_train': 0.9999735948191085, 'explicitness_score_test': 0.999866409046459},
    'perfect/beta_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'permuted_flipped/factor_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'permuted_flipped/dci': {'informativeness_train': 1.0, 'informativeness_test': 0.995, 'disentanglement': 0.999999999520678, 'completeness': 0.9999999995206779},
    'permuted_flipped/mig': {'discrete_mig': 0.9600184144362748},
    'permuted_flipped/sap': {'SAP_score': 0.25166666666666665},
    'permuted_flipped/modularity': {'modularity_score': 0.9973316730641463, 'explicitness_score_train': 0.9999735948191085, 'explicitness_score_test': 0.999866409046459},
    'permuted_flipped/beta_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'rotated/factor_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'rotated/dci': {'informativeness_train': 1.0, 'informativeness_test': 0.9766666666666666, 'disentanglement': 0.5585456852637167, 'completeness': 0.5634862028403961},
    'rotated/mig': {'discrete_mig': 0.48889441445182147},
    'rotated/sap': {'SAP_score': 0.20333333333333334},
    'rotated/modularity': {'modularity_score': 0.9036593028120036, 'explicitness_score_train': 0.9999684392431849, 'explicitness_score_test': 0.999866409046459},
    'rotated/beta_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'redundant/factor_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'redundant/dci': {'informativeness_train': 1.0, 'informativeness_test': 0.995, 'disentanglement': 0.9999999993693616, 'completeness': 0.8341464441188826},
    'redundant/mig': {'discrete_mig': 0.6358756060246692},
    'redundant/sap': {'SAP_score': 0.13166666666666668},
    'redundant/modularity': {'modularity_score': 0.996928522564198, 'explicitness_score_train': 0.9999735948191085, 'explicitness_score_test': 0.999866409046459},
    'redundant/beta_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'dead_dims/factor_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'dead_dims/dci': {'informativeness_train': 1.0, 'informativeness_test': 0.995, 'disentanglement': 0.9999999995206773, 'completeness': 0.9999999993456357},
    'dead_dims/mig': {'discrete_mig': 0.9600184144362744},
    'dead_dims/sap': {'SAP_score': 0.22499999999999998},
    'dead_dims/beta_vae': {'train_accuracy': 1.0, 'eval_accuracy': 1.0},
    'collapsed/factor_vae': {'train_accuracy': 0.0, 'eval_accuracy': 0.0},
    'collapsed/dci': {'informativeness_train': 0.2891666666666667, 'informativeness_test': 0.23833333333333337, 'disentanglement': 2.220446049250313e-16, 'completeness': 2.220446049250313e-16},
    'collapsed/mig': {'discrete_mig': 0.0},
    'collapsed/sap': {'SAP_score': 0.0},
    'collapsed/beta_vae': {'train_accuracy': 0.38, 'eval_accuracy': 0.33},}


def _run(representation, metric):
    kwargs = dict(SIZES[metric])
    if metric in ("dci", "sap"):
        kwargs["estimator_random_state"] = np.random.RandomState(0)
    return METRICS[metric](VectorData(), REPRESENTATIONS[representation], np.random.RandomState(0), **kwargs)


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_equals_disentanglement_lib(case):
    representation, metric = case.split("/")
    scores = _run(representation, metric)
    for key, expected in REFERENCE[case].items():
        assert scores[key] == pytest.approx(expected, abs=1e-9), key
        assert np.isfinite(scores[key])


def test_known_answers():
    assert _run("perfect", "factor_vae")["eval_accuracy"] == 1.0
    perfect_dci = _run("perfect", "dci")
    assert perfect_dci["disentanglement"] > 0.999 and perfect_dci["completeness"] > 0.999
    assert _run("perfect", "mig")["discrete_mig"] > 0.9
    rotated_dci = _run("rotated", "dci")
    assert rotated_dci["disentanglement"] < 0.7 and rotated_dci["completeness"] < 0.7
    assert _run("rotated", "mig")["discrete_mig"] < 0.6
    # A copy of code 0 halves the gap for factor 0 only: MIG drops to about (K-1)/K, D stays 1.
    assert 0.55 < _run("redundant", "mig")["discrete_mig"] < 0.7
    redundant_dci = _run("redundant", "dci")
    assert redundant_dci["disentanglement"] > 0.999 and redundant_dci["completeness"] < 0.9
    assert _run("dead_dims", "factor_vae") == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3}


def test_collapsed_representation_scores_zero_without_crashing():
    assert _run("collapsed", "factor_vae") == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    assert _run("collapsed", "mig")["discrete_mig"] == 0.0
    assert _run("collapsed", "sap")["SAP_score"] == 0.0
    assert _run("collapsed", "dci")["disentanglement"] < 1e-9
    # disentanglement_lib raises on a constant code here (NaN after dividing by std 0); we score
    # the constant code as 0: modularity 0 and chance-level explicitness.
    assert _run("collapsed", "modularity") == {"modularity_score": 0.0, "explicitness_score_train": 0.5, "explicitness_score_test": 0.5}
    dead = _run("dead_dims", "modularity")
    assert dead["explicitness_score_test"] == pytest.approx(REFERENCE["perfect/modularity"]["explicitness_score_test"], abs=1e-9)


def test_forked_random_states_match_a_sequential_run():
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.RandomState(3)
    x, y = rng.randn(60, 2), rng.randint(3, size=60)
    sequential = np.random.RandomState(5)
    GradientBoostingClassifier(n_estimators=4, random_state=sequential).fit(x, y)
    shared = np.random.RandomState(5)
    (fork,) = fork_random_states(shared, [4 * 3])
    GradientBoostingClassifier(n_estimators=4, random_state=fork).fit(x, y)
    # The fork made exactly the fit's draws, and the shared RNG skipped exactly as many.
    assert np.array_equal(fork.get_state()[1], sequential.get_state()[1]) and fork.get_state()[2] == sequential.get_state()[2]
    assert np.array_equal(shared.get_state()[1], sequential.get_state()[1]) and shared.get_state()[2] == sequential.get_state()[2]


def _arrays(n=300, seed=0):
    rng = np.random.RandomState(seed)
    factors = rng.randint(4, size=(n, 3))
    codes = factors + 0.1 * rng.randn(n, 3)
    return codes, factors


def test_array_versions_match_data_versions():
    data, fn = VectorData(), REPRESENTATIONS["rotated"]
    from concept_diffusion.evaluation.sampling import sample_codes_and_factors

    random_state = np.random.RandomState(0)
    train = sample_codes_and_factors(data, fn, 400, random_state)
    test = sample_codes_and_factors(data, fn, 200, random_state)
    assert dci_from_codes(*train, *test, estimator_random_state=np.random.RandomState(0)) == _run("rotated", "dci")
    assert sap_from_codes(*train, *test, estimator_random_state=np.random.RandomState(0)) == _run("rotated", "sap")
    assert modularity_explicitness_from_codes(*train, *test) == _run("rotated", "modularity")
    mig_train = sample_codes_and_factors(data, fn, 500, np.random.RandomState(0))
    assert mig_from_codes(*mig_train) == _run("rotated", "mig")


def test_dci_fast_is_close_to_exact():
    codes, factors = _arrays(600)
    exact = dci_from_codes(codes[:400], factors[:400], codes[400:], factors[400:], estimator_random_state=np.random.RandomState(0))
    fast = dci_from_codes(codes[:400], factors[:400], codes[400:], factors[400:], fast=True)
    for key in exact:
        assert abs(exact[key] - fast[key]) < 0.05, key


def test_dci_importance_aggregation():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert completeness(np.vstack([np.eye(3), np.eye(3)])) == pytest.approx(1 - np.log(2) / np.log(6))
    assert disentanglement(np.zeros((4, 4))) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda x: np.full((len(x), 3), np.nan, np.float32), "NaN or infinite"),
        (lambda x: np.concatenate([x, [[np.inf, 0, 0]]]), "rows for"),
        (lambda x: x[:, 0], "2-D array"),
    ],
)
def test_broken_representations_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        compute_mig(VectorData(), bad, np.random.RandomState(0), num_train=50)
    with pytest.raises(ValueError, match=message):
        compute_factor_vae(VectorData(), bad, np.random.RandomState(0), num_train=5, num_eval=5, num_variance_estimate=50)


def test_bad_sizes_and_single_codes_are_clear_errors():
    codes, factors = _arrays(50)
    with pytest.raises(ValueError, match="at least two codes"):
        mig_from_codes(codes[:, :1], factors)
    with pytest.raises(ValueError, match="at least two codes"):
        sap_from_codes(codes[:, :1], factors, codes[:, :1], factors)
    with pytest.raises(ValueError, match="at least two codes"):
        dci_from_codes(codes[:40, :1], factors[:40], codes[40:, :1], factors[40:])
    with pytest.raises(ValueError, match="one row per code row"):
        mig_from_codes(codes, factors[:10])
    with pytest.raises(ValueError, match="num_train must be an integer >= 2"):
        compute_dci(VectorData(), REPRESENTATIONS["perfect"], np.random.RandomState(0), num_train=1, num_test=10)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        compute_factor_vae(VectorData(), REPRESENTATIONS["perfect"], np.random.RandomState(0), batch_size=1)
    with pytest.raises(ValueError, match="at least two values"):
        dci_from_codes(codes, np.zeros_like(factors), codes, factors)
