"""The trained model we ship in examples/models/: it loads in one line and its concepts still carry the factors."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi

from concept_diffusion import ConceptDiffusionPipeline, evaluate, load_ground_truth

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "encdiff-shapes3d-procedural"
# FactorVAE's chance level on Shapes3D's 6 factors is 1/6. The shipped model scores about 0.5 in this
# fast mode; a loading or model regression (wrong weights, a broken encoder) falls towards chance.
FACTOR_VAE_FLOOR = 0.35
FAST_FACTOR_VAE = {"factor_vae": {"num_train": 500, "num_eval": 250, "num_variance_estimate": 2000}}


@pytest.fixture(scope="module")
def shipped():
    return ConceptDiffusionPipeline.from_pretrained(MODEL)


def test_shipped_model_scores_well_above_chance(shipped):
    data = load_ground_truth("shapes3d-procedural", image_size=shipped.concept_encoder.config.sample_size)
    scores = evaluate(shipped, data, metrics=["factor_vae"], seed=0, metric_kwargs=FAST_FACTOR_VAE, progress=False)
    assert scores["factor_vae.eval_accuracy"] >= FACTOR_VAE_FLOOR, scores


def test_shipped_model_is_small_portable_and_its_card_carries_the_exact_scores(shipped):
    size = sum(path.stat().st_size for path in MODEL.rglob("*") if path.is_file())
    assert size < 15 * 2**20
    assert not list(MODEL.rglob("*.bin")) and not list(MODEL.rglob("*.pt"))
    assert (MODEL / "pipeline.py").is_file() and (MODEL / "concept_encoder" / "concept_encoder.py").is_file()
    metrics = json.loads((MODEL / "metrics.json").read_text())
    card = (MODEL / "README.md").read_text()
    for key in ("factor_vae.eval_accuracy", "dci.disentanglement", "mig.discrete_mig", "beta_vae.eval_accuracy"):
        assert f"{metrics[key]:.3f}" in card, key
    for picture in ("swap.png", "traversal.png", "concept_factor_map.png"):
        assert (MODEL / picture).is_file() and f"./{picture}" in card
    images = np.random.default_rng(0).random((2, 32, 32, 3))
    out = shipped(images=images, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()


def test_shipped_model_carries_the_current_remote_code():
    """Users without the package run the folder's copies: they must be today's modules, not an older save's."""
    import concept_diffusion.models.concept_encoder as encoder_module
    import concept_diffusion.pipelines.pipeline_concept_diffusion as pipeline_module

    refresh = "re-write the shipped folder with benchmarks/release_model.py (--skip-training with the run that made it)"
    assert (MODEL / "pipeline.py").read_text() == Path(pipeline_module.__file__).read_text(), refresh
    assert (MODEL / "concept_encoder" / "concept_encoder.py").read_text() == Path(encoder_module.__file__).read_text(), refresh


def test_release_script_publishes_the_shipped_folder(hub_server, hub_repo_id):
    spec = importlib.util.spec_from_file_location("release_model", ROOT / "benchmarks" / "release_model.py")
    release_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release_model)
    assert release_model.main(["--publish-only", "--out", str(MODEL), "--push-to-hub", hub_repo_id]) == 0
    files = set(HfApi().list_repo_files(hub_repo_id))
    assert {"model_index.json", "pipeline.py", "README.md", "swap.png", "traversal.png",
            "unet/diffusion_pytorch_model.safetensors", "concept_encoder/diffusion_pytorch_model.safetensors"} <= files
    assert "concept_prior/diffusion_pytorch_model.safetensors" in files
    pulled = ConceptDiffusionPipeline.from_pretrained(hub_repo_id)
    assert pulled.concept_encoder.config.num_concepts == 10
    out = pulled.sample(2, prior="independent", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 32, 32, 3) and out.concepts.shape == (2, 10)


def test_shipped_model_samples_from_its_prior(shipped):
    for kind in ("empirical", "independent", "gmm"):
        out = shipped.sample(2, prior=kind, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()
    assert shipped.concept_prior.config.num_points == 4000
