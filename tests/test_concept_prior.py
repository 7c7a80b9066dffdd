"""The concept prior: fitted on a pipeline's concepts, saved and pushed with it, drawn from by `pipe.sample`."""

import json
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline
from concept_diffusion.training.prior import attach_prior, fit_concept_prior

KINDS = ("empirical", "independent", "gmm")


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def prior_pipe():
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    images = np.random.RandomState(0).rand(64, 32, 32, 3).astype(np.float32)
    attach_prior(pipe, fit_concept_prior(pipe, images, num_components=4))
    return pipe


def is_fitted_row(points, row):
    return bool((points == row).all(1).any())


def test_each_kind_draws_from_what_was_fitted(prior_pipe):
    prior = prior_pipe.concept_prior
    points = prior.points
    assert points.shape == (64, 4)
    empirical = prior.sample(40, generator=generator(), kind="empirical")
    assert all(is_fitted_row(points, row) for row in empirical)  # whole training vectors
    independent = prior.sample(40, generator=generator(), kind="independent")
    assert all(torch.isin(independent[:, k], points[:, k]).all() for k in range(4))  # each value seen for its concept
    assert sum(is_fitted_row(points, row) for row in independent) < 5  # but in new combinations
    gmm = prior.sample(4000, generator=generator(), kind="gmm")
    torch.testing.assert_close(gmm.mean(0), points.mean(0), atol=0.15 * float(points.std(0).max()), rtol=0)
    assert not any(is_fitted_row(points, row) for row in gmm[:40])
    torch.testing.assert_close(prior.sample(5, generator=generator(3)), prior.sample(5, generator=generator(3)))
    one_each = prior.sample(3, generator=[generator(i) for i in range(3)])
    torch.testing.assert_close(one_each[2:], prior.sample(1, generator=generator(2)))  # row i from generator i alone
    with pytest.raises(ValueError, match="prior kind must be one of"):
        prior.sample(2, kind="uniform")
    with pytest.raises(ValueError, match="num_samples must be"):
        prior.sample(0)


def test_sample_decodes_concepts_drawn_from_the_prior(prior_pipe):
    out = prior_pipe.sample(3, num_inference_steps=2, generator=generator(1), output_type="np")
    assert out.images.shape == (3, 32, 32, 3) and out.concepts.shape == (3, 4)
    g = generator(1)  # the concepts are drawn first, then the starting noise
    concepts = prior_pipe.concept_prior.sample(3, generator=g)
    direct = prior_pipe(concepts=concepts, num_inference_steps=2, generator=g, output_type="np").images
    torch.testing.assert_close(out.concepts, concepts)
    np.testing.assert_array_equal(out.images, direct)
    for kind in KINDS:
        images, drawn = prior_pipe.sample(2, prior=kind, num_inference_steps=1, output_type="pt", return_dict=False)
        assert images.shape == (2, 3, 32, 32) and drawn.shape == (2, 4)
    with pytest.raises(ValueError, match="num_images must be a whole number"):
        prior_pipe.sample(0)
    with pytest.raises(ValueError, match="prior kind must be one of"):
        prior_pipe.sample(1, prior="uniform")


def test_the_prior_travels_with_the_pipeline(prior_pipe, tmp_path, hub_server, hub_repo_id):
    prior_pipe.save_pretrained(tmp_path / "with")
    assert {"config.json", "diffusion_pytorch_model.safetensors", "concept_prior.py"} <= {
        path.name for path in (tmp_path / "with" / "concept_prior").iterdir()}
    assert json.loads((tmp_path / "with" / "model_index.json").read_text())["concept_prior"] == ["concept_prior", "ConceptPrior"]
    expected = prior_pipe.concept_prior.sample(6, generator=generator(5), kind="gmm")
    for source in (tmp_path / "with", hub_repo_id):
        if source == hub_repo_id:
            prior_pipe.push_to_hub(hub_repo_id)
            assert "concept_prior/diffusion_pytorch_model.safetensors" in HfApi().list_repo_files(hub_repo_id)
        loaded = ConceptDiffusionPipeline.from_pretrained(source)
        torch.testing.assert_close(loaded.concept_prior.sample(6, generator=generator(5), kind="gmm"), expected)
        assert loaded.concept_prior.config.kind == "independent"


def test_a_folder_without_a_prior_loads_and_says_how_to_fit_one(tmp_path):
    build_pipeline("tiny", seed=0).save_pretrained(tmp_path / "old")
    index = json.loads((tmp_path / "old" / "model_index.json").read_text())
    index.pop("concept_prior", None)  # as folders saved before the prior existed
    (tmp_path / "old" / "model_index.json").write_text(json.dumps(index))
    old = ConceptDiffusionPipeline.from_pretrained(tmp_path / "old")
    assert old.concept_prior is None
    with pytest.raises(ValueError, match="no concept prior.*concept-diffusion fit-prior"):
        old.sample(1)
    other = build_pipeline("cpu")  # 10 concepts, not 4
    with pytest.raises(ValueError, match="the prior draws 4 concepts, the pipeline has 10"):
        attach_prior(other, fit_concept_prior(old, np.random.RandomState(0).rand(8, 32, 32, 3).astype(np.float32)))


def test_the_prior_loads_without_the_package(prior_pipe, tmp_path, run_without_package):
    prior_pipe.save_pretrained(tmp_path / "with")
    script = textwrap.dedent(f"""
        import torch
        from diffusers import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({str(tmp_path / "with")!r}, trust_remote_code=True)
        out = pipe.sample(2, num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="np")
        print(type(pipe.concept_prior).__name__, out.images.shape)
        """)
    result = run_without_package(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ConceptPrior (2, 32, 32, 3)" in result.stdout


def test_cli_fits_a_prior_into_a_folder_and_draws_a_grid(tmp_path, capsys):
    import PIL.Image

    from concept_diffusion.cli import main

    folder = tmp_path / "pipeline"
    build_pipeline("tiny", seed=0).save_pretrained(folder)
    assert main(["sample", str(folder), "--num-images", "2", "--steps", "1", "--out", str(tmp_path / "none.png")]) == 2
    assert "no concept prior" in capsys.readouterr().err
    assert main(["fit-prior", str(folder), "--data", "shapes3d-procedural", "--images", "64", "--kind", "gmm"]) == 0
    assert ConceptDiffusionPipeline.from_pretrained(folder).concept_prior.config.kind == "gmm"
    out = tmp_path / "samples.png"
    assert main(["sample", str(folder), "--num-images", "3", "--prior", "empirical,independent", "--steps", "1", "--out", str(out)]) == 0
    with PIL.Image.open(out) as grid:
        assert grid.width > 3 * 4 * 32 and grid.height > 2 * 4 * 32  # two rows of three enlarged tiles, labelled
    assert main(["sample", str(folder), "--prior", "uniform", "--out", str(out)]) == 2


def test_a_training_run_saves_a_prior_fitted_on_its_data(tmp_path):
    from concept_diffusion.training import AutoencoderTrainingConfig, TrainingConfig, build_config, train, train_autoencoder

    vae = train_autoencoder(build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path / "vae"),
                                                                         max_steps=1, batch_size=4)))
    result = train(build_config(TrainingConfig, dict(preset="tiny", vae=vae, output_dir=str(tmp_path / "run"), max_steps=1,
                                                     batch_size=4, eval_every=0, eval_metrics=[], report_to="none",
                                                     sample_steps=1, latent_scale_batches=1)))
    pipe = ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir)
    prior = pipe.concept_prior
    assert prior.config.num_points == 4000 and prior.config.num_components >= 1
    assert prior.points.shape[1] == pipe.concept_encoder.config.num_concepts
    assert len(torch.unique(prior.points, dim=0)) > 1000  # the concepts of many different training images
