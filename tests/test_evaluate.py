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
