"""`evaluate` and `concept-diffusion evaluate`: same numbers as the metric functions, models in eval mode."""

import argparse
import json

import numpy as np
import pytest
import torch
from test_metrics import REPRESENTATIONS, VectorData

from concept_diffusion.evaluation import compute_dci, compute_factor_vae, compute_mig, compute_modularity_explicitness, evaluate

SMALL = {
    "factor_vae": {"num_train": 60, "num_eval": 30, "num_variance_estimate": 200},
    "dci": {"num_train": 200, "num_test": 100},
    "mig": {"num_train": 200},
    "sap": {"num_train": 200, "num_test": 100},
    "modularity": {"num_train": 200, "num_test": 100},
    "beta_vae": {"num_train": 60, "num_eval": 30, "batch_size": 8},
}


def test_evaluate_matches_the_metric_functions_and_writes_json(tmp_path):
    fn = REPRESENTATIONS["rotated"]
    out = tmp_path / "scores.json"
    scores = evaluate(fn, VectorData(), metrics=list(SMALL), metric_kwargs=SMALL, out=out, progress=False)
    assert json.loads(out.read_text()) == scores
    assert all(isinstance(value, float) and np.isfinite(value) for value in scores.values())
    dci = compute_dci(VectorData(), fn, np.random.RandomState(0), estimator_random_state=np.random.RandomState(0), **SMALL["dci"])
    assert {f"dci.{key}": value for key, value in dci.items()}.items() <= scores.items()
    assert scores["mig.discrete_mig"] == compute_mig(VectorData(), fn, np.random.RandomState(0), **SMALL["mig"])["discrete_mig"]
    modularity = compute_modularity_explicitness(VectorData(), fn, np.random.RandomState(0), **SMALL["modularity"])
    assert scores["modularity.modularity_score"] == modularity["modularity_score"]
    factor_vae = compute_factor_vae(VectorData(), fn, np.random.RandomState(0), **SMALL["factor_vae"])
    assert scores["factor_vae.eval_accuracy"] == factor_vae["eval_accuracy"]
    again = evaluate(fn, VectorData(), metrics="mig,dci", metric_kwargs={"mig": SMALL["mig"], "dci": SMALL["dci"]}, progress=False)
    assert again["dci.disentanglement"] == scores["dci.disentanglement"]


def test_evaluate_rejects_bad_requests():
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(REPRESENTATIONS["perfect"], VectorData(), metrics=["fvae"], progress=False)
    with pytest.raises(ValueError, match="unknown settings"):
        evaluate(REPRESENTATIONS["perfect"], VectorData(), metrics=["mig"], metric_kwargs={"mig": {"num_tests": 5}}, progress=False)
    with pytest.raises(ValueError, match="cannot evaluate"):
        evaluate(42, VectorData(), metrics=["mig"], progress=False)


@pytest.fixture(scope="module")
def tiny_pipeline():
    from concept_diffusion import build_pipeline

    torch.manual_seed(0)
    return build_pipeline("tiny")


def test_evaluate_a_pipeline_and_its_encoder_in_eval_mode(tiny_pipeline):
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.evaluation.evaluate import representation_function

    encoder = tiny_pipeline.concept_encoder
    data = load_ground_truth("shapes3d-procedural", image_size=encoder.config.sample_size)
    encoder.train()
    kwargs = {"factor_vae": {"num_train": 8, "num_eval": 4, "num_variance_estimate": 64, "batch_size": 16}, "dci": {"num_train": 80, "num_test": 40}}
    scores = evaluate(tiny_pipeline, data, ["factor_vae", "dci"], batch_size=16, fast=True, metric_kwargs=kwargs, progress=False)
    assert encoder.training, "evaluate must give the model back in the mode it found it"
    assert set(scores) == {f"factor_vae.{k}" for k in ("train_accuracy", "eval_accuracy", "num_active_dims")} | {
        f"dci.{k}" for k in ("disentanglement", "completeness", "informativeness_train", "informativeness_test")
    }
    assert all(np.isfinite(value) for value in scores.values())
    _, observations = data.sample(20, np.random.RandomState(0))
    from_pipeline, restore_pipeline = representation_function(tiny_pipeline, batch_size=7)
    from_encoder, restore_encoder = representation_function(encoder, batch_size=20)
    assert not encoder.training
    np.testing.assert_allclose(from_pipeline(observations), from_encoder(observations), atol=1e-5)
    restore_encoder()  # in reverse order: each puts back the mode it found
    restore_pipeline()
    assert encoder.training


def test_cli_evaluates_a_saved_pipeline(tiny_pipeline, tmp_path, monkeypatch):
    from concept_diffusion.cli import evaluate as evaluate_command

    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    calls = {}
    import concept_diffusion.evaluation as evaluation

    original = evaluation.evaluate

    def small_evaluate(*args, **kwargs):
        calls.update(kwargs)
        return original(*args, metric_kwargs={"mig": SMALL["mig"]}, progress=False, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", small_evaluate)
    parser = argparse.ArgumentParser()
    evaluate_command.register(parser.add_subparsers())
    out = tmp_path / "scores.json"
    args = parser.parse_args(["evaluate", str(tmp_path / "pipe"), "--data", "shapes3d-procedural", "--metrics", "mig", "--out", str(out)])
    assert args.func(args) == 0
    assert calls["metrics"] == "mig"
    assert set(json.loads(out.read_text())) == {"mig.discrete_mig"}


SIX_SMALL = {
    # prune_threshold 0: the untrained codes vary little, and every vote must be drawn and encoded.
    "factor_vae": {"num_train": 30, "num_eval": 15, "num_variance_estimate": 300, "batch_size": 16, "prune_threshold": 0.0},
    "dci": {"num_train": 150, "num_test": 60},
    "mig": {"num_train": 150},
    "sap": {"num_train": 150, "num_test": 60},
    "modularity": {"num_train": 150, "num_test": 60},
    "beta_vae": {"num_train": 30, "num_eval": 15, "batch_size": 8},
}


def small_grid(image_size=32):
    """A 3 x 4 x 5 grid of RGB images: 60 distinct images, so draws repeat many times."""
    from concept_diffusion.data import GroundTruthData

    class SmallGrid(GroundTruthData):
        factor_names = ["red", "green", "stripe"]
        factor_sizes = [3, 4, 5]
        observation_shape = (image_size, image_size, 3)

        def _images_at(self, indices):
            factors = self.index_to_factors(indices)
            images = np.zeros((len(indices), image_size, image_size, 3), np.float32)
            images[..., 0] = factors[:, 0, None, None] / 2
            images[..., 1] = factors[:, 1, None, None] / 3
            columns = np.arange(image_size)
            images[..., 2] = (columns[None, None, :] // 4 == factors[:, 2, None, None]).astype(np.float32)
            return images

    return SmallGrid()


def test_cached_scores_equal_uncached_bit_for_bit_and_each_image_is_encoded_once(tiny_pipeline):
    encoder = tiny_pipeline.concept_encoder
    data = small_grid(encoder.config.sample_size)
    encoded = []
    hook = encoder.register_forward_hook(lambda module, inputs, output: encoded.append(len(inputs[0])))
    try:
        cached = evaluate(tiny_pipeline, data, list(SIX_SMALL), metric_kwargs=SIX_SMALL, fast=True, progress=False)
        encoded_cached, encoded[:] = sum(encoded), []
        uncached = evaluate(tiny_pipeline, data, list(SIX_SMALL), metric_kwargs=SIX_SMALL, fast=True, progress=False, cache=False)
        encoded_uncached = sum(encoded)
    finally:
        hook.remove()
    assert cached == uncached  # the bits are the point: same model, same images, same draws
    draws = 300 + 45 * 16 + 45 * 2 * 8 + 150 + 60  # FactorVAE, BetaVAE, the shared pairs
    assert encoded_uncached == draws
    assert encoded_cached == 8 + 8 + len(data), "each distinct image once (after the determinism probe: 8 images twice)"


def test_the_cache_encodes_exactly_the_distinct_images_drawn():
    from concept_diffusion.evaluation.code_cache import CodeCache, IndexedObservations
    from concept_diffusion.evaluation.factor_vae import factor_vae_draws

    data = small_grid(8)
    seen = []

    def representation(observations):
        seen.append(len(observations))
        return observations.reshape(len(observations), -1)[:, :4].astype(np.float64) + observations.mean(axis=(1, 2, 3))[:, None]

    cache = CodeCache(data, representation, progress=False)
    draws = [indices for _, _, indices in factor_vae_draws(IndexedObservations(data), np.random.RandomState(0), 16, 20, 10, 100)]
    indices = np.concatenate(draws)
    cache.prefetch(indices)
    assert cache.num_encoded == sum(seen) == len(np.unique(indices)) < len(indices)
    np.testing.assert_array_equal(cache(indices[::-1]), representation(data.images(indices[::-1])))
    assert cache.num_encoded == len(np.unique(indices)), "known images are not encoded again"


def test_a_stochastic_representation_is_refused_by_the_cache_and_runs_without_it():
    from concept_diffusion.data import load_ground_truth

    data = load_ground_truth("dsprites-procedural", image_size=8)
    noise = np.random.RandomState(0)

    def sampled(observations):
        return observations.reshape(len(observations), -1)[:, :3] + noise.randn(len(observations), 3)

    with pytest.raises(ValueError, match="stochastic.*cache=False"):
        evaluate(sampled, data, ["mig"], metric_kwargs={"mig": {"num_train": 50}}, progress=False)
    scores = evaluate(sampled, data, ["mig"], metric_kwargs={"mig": {"num_train": 50}}, progress=False, cache=False)
    assert np.isfinite(scores["mig.discrete_mig"])


def test_mixed_precision_is_for_gpus_and_checked(tiny_pipeline):
    with pytest.raises(ValueError, match="mixed_precision='bf16' is for a model on a GPU"):
        evaluate(tiny_pipeline, "shapes3d-procedural", ["mig"], progress=False, mixed_precision="bf16")
    with pytest.raises(ValueError, match="mixed_precision must be"):
        evaluate(tiny_pipeline, "shapes3d-procedural", ["mig"], progress=False, mixed_precision="int8")
