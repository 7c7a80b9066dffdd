"""Smoke tests of the benchmark baselines (benchmarks/baselines): tiny widths, two steps, seconds."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

# The benchmarks are scripts, not part of the installed package; train_efficiency.py imports
# `baselines` from its own folder, and so does this test.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from baselines import GaussianVAE, train_baseline  # noqa: E402

TINY = dict(data_name="shapes3d-procedural", image_size=32, z_dim=4, width=8, batch_size=8, max_steps=2,
            eval_every=2, eval_samples=64, log_every=1)


@pytest.mark.parametrize("kind", ["beta_vae", "beta_tcvae"])
def test_two_steps_log_like_the_encdiff_trainer(tmp_path, kind):
    result = train_baseline(kind, output_dir=str(tmp_path), eval_metrics=("factor_vae", "dci", "mig"), **TINY)
    assert result.step == 2 and result.images_seen == 16
    records = [json.loads(line) for line in Path(result.log_file).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2]
    for record in records[:2]:
        assert {"step", "images_seen", "seconds", "loss", "reconstruction", "kl"} <= set(record)
        assert math.isfinite(record["loss"])
    if kind == "beta_tcvae":
        assert {"mutual_information", "total_correlation", "dimension_wise_kl"} <= set(records[0])
    assert records[-1]["final"] is True
    for key in ("factor_vae.eval_accuracy", "dci.disentanglement", "mig.discrete_mig", "recon_mse"):
        assert key in records[-1] and key in result.metrics, key
    assert 0 <= result.metrics["recon_mse"] <= 1
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "baseline.json").read_text())["kind"] == kind


def test_same_seed_same_weights_and_data_order(tmp_path):
    from safetensors.torch import load_file

    first = train_baseline("beta_vae", output_dir=str(tmp_path / "a"), eval_metrics=(), **TINY)
    second = train_baseline("beta_vae", output_dir=str(tmp_path / "b"), eval_metrics=(), **TINY)
    a, b = load_file(first.model_file), load_file(second.model_file)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert first.metrics["recon_mse"] == second.metrics["recon_mse"]


def batch_and_generator():
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return images, torch.Generator().manual_seed(0)


def test_beta_zero_beta_vae_is_plain_reconstruction():
    images, generator = batch_and_generator()
    torch.manual_seed(0)
    terms = GaussianVAE("beta_vae", sample_size=32, z_dim=4, width=8, beta=0.0).loss(images, generator)
    assert terms.kl > 0
    assert torch.equal(terms.loss, terms.reconstruction)


def test_beta_tcvae_decomposition():
    images, generator = batch_and_generator()
    torch.manual_seed(0)
    model = GaussianVAE("beta_tcvae", sample_size=32, z_dim=4, width=8, beta=0.0, dataset_size=1000)
    terms = model.loss(images, generator)
    parts = (terms.mutual_information, terms.total_correlation, terms.dimension_wise_kl)
    assert all(torch.isfinite(part) for part in parts)
    # beta weights the total correlation alone: at beta=0 it drops out of the loss.
    torch.testing.assert_close(terms.loss, terms.reconstruction + terms.mutual_information + terms.dimension_wise_kl)
    model.beta = 6.0
    heavier = model.loss(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(heavier.loss - terms.loss, 6.0 * terms.total_correlation)


def test_bad_arguments_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        GaussianVAE("vae", sample_size=32, z_dim=4, width=8)
    with pytest.raises(ValueError, match="dataset_size"):
        GaussianVAE("beta_tcvae", sample_size=32, z_dim=4, width=8)
    with pytest.raises(ValueError, match="max_steps or max_minutes"):
        train_baseline("beta_vae", output_dir=str(tmp_path), **{**TINY, "max_steps": None})
