"""Labelled images without a full factor grid: load, train, score with the pair metrics, refuse the grid metrics."""

import numpy as np
import PIL.Image
import pytest
import torch

from concept_diffusion.data import LabelledImages, load_ground_truth, to_hf_dataset
from concept_diffusion.data.labelled import histogram_bins
from concept_diffusion.evaluation import evaluate

# Enough points that every value of every factor is in both the training and the test sample.
PAIR_METRICS = {"dci": {"num_train": 300, "num_test": 300}, "mig": {"num_train": 300},
                "sap": {"num_train": 300, "num_test": 300}, "modularity": {"num_train": 300, "num_test": 300}}


@pytest.fixture(scope="module")
def shapes_subset(tmp_path_factory):
    """300 random images of shapes3d-procedural at 32 px, saved with save_to_disk: not a full grid."""
    grid = load_ground_truth("shapes3d-procedural", image_size=32)
    indices = np.sort(np.random.RandomState(0).choice(len(grid), 300, replace=False))
    folder = tmp_path_factory.mktemp("subset") / "shapes3d-subset"
    to_hf_dataset(grid, indices=indices).save_to_disk(str(folder))
    return str(folder), grid, indices


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """An image folder with metadata.csv: a discrete `size` and a continuous `brightness` factor."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    rows = ["file_name,size,brightness"]
    for i in range(75):
        size, brightness = 4 + 4 * (i % 3), 0.1 + 0.8 * (i % 25) / 24 + rng.uniform(0, 1e-3)
        image = np.zeros((32, 32, 3), np.uint8)
        image[:, :, 1] = int(255 * brightness)
        image[8 : 8 + size, 8 : 8 + size, 0] = 255
        PIL.Image.fromarray(image).save(folder / f"im{i:03d}.png")
        rows.append(f"im{i:03d}.png,{size},{brightness:.6f}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def tiny_pipeline():
    from concept_diffusion import build_pipeline

    torch.manual_seed(0)
    return build_pipeline("tiny")


def test_a_subset_opens_as_labelled_images_with_its_factors_and_images(shapes_subset):
    folder, grid, indices = shapes_subset
    data = load_ground_truth(folder)
    assert isinstance(data, LabelledImages) and not data.has_factor_grid
    assert data.factor_names == grid.factor_names and data.factor_sizes == grid.factor_sizes
    factors, images = data.sample(5, np.random.RandomState(0))
    rows = np.random.RandomState(0).randint(300, size=5)
    np.testing.assert_array_equal(factors, grid.index_to_factors(indices[rows]))
    np.testing.assert_allclose(images, grid.images(indices[rows]), atol=1 / 255 + 1e-6)  # PNG round trip of uint8
    with pytest.raises(ValueError, match="no image for every combination.*FactorVAE and BetaVAE"):
        data.sample_observations_from_factors(factors, np.random.RandomState(0))


def test_an_image_folder_with_metadata_bins_continuous_factors_as_disentanglement_lib(image_folder):
    data = load_ground_truth(image_folder)
    assert isinstance(data, LabelledImages)
    assert data.factor_names == ["size", "brightness"] and data.continuous_factors == ["brightness"]
    assert data.observation_shape == (32, 32, 3)
    brightness = data.labels[:, 1]
    expected = np.digitize(brightness, np.histogram(brightness, 20)[1][:-1]) - 1  # histogram_discretizer, from 0
    np.testing.assert_array_equal(data.index_to_factors(np.arange(75))[:, 1], expected)
    np.testing.assert_array_equal(data.index_to_factors(np.arange(75))[:, 0], np.arange(75) % 3)
    batch = data.torch_dataset()[[0, 1, 2]]
    assert batch["images"].shape == (3, 3, 32, 32) and batch["images"].min() >= -1 and batch["images"].max() <= 1
    np.testing.assert_array_equal(histogram_bins(np.array([0.0, 0.25, 0.5, 1.0]), 2), [1, 1, 2, 2])


@pytest.mark.parametrize("which", ["subset", "folder"])
def test_the_pair_metrics_score_labelled_images_and_the_grid_metrics_refuse(which, shapes_subset, image_folder, tiny_pipeline):
    source = shapes_subset[0] if which == "subset" else image_folder
    scores = evaluate(tiny_pipeline, source, list(PAIR_METRICS), metric_kwargs=PAIR_METRICS, fast=True, progress=False)
    assert {name.split(".")[0] for name in scores} == set(PAIR_METRICS)
    assert all(np.isfinite(value) for key, value in scores.items() if key != "mig.discrete_mig")
    for metric, name in (("factor_vae", "FactorVAE"), ("beta_vae", "BetaVAE")):
        with pytest.raises(ValueError, match=f"{name} needs a full factor grid: it fixes one factor.*dci, mig, sap and modularity"):
            evaluate(tiny_pipeline, source, ["dci", metric], progress=False)


def test_labelled_images_train_with_the_tiny_preset_and_are_scored(image_folder, tmp_path, caplog):
    from concept_diffusion.training import AutoencoderTrainingConfig, TrainingConfig, build_config, train, train_autoencoder

    vae = train_autoencoder(build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path / "vae"), max_steps=1, batch_size=4)))
    config = build_config(TrainingConfig, dict(
        preset="tiny", data=image_folder, vae=vae, output_dir=str(tmp_path / "run"), max_steps=2, batch_size=4,
        lr_warmup_steps=1, eval_every=0, eval_metrics=["factor_vae", "dci", "mig"], eval_samples=40, checkpoint_every=0,
        report_to="none", sample_steps=2, latent_scale_batches=1, log_every=1,
    ))
    with caplog.at_level("WARNING"):
        result = train(config)
    assert result.step == 2
    assert {"dci.disentanglement", "mig.discrete_mig"} <= set(result.metrics)
    assert not any(key.startswith("factor_vae") for key in result.metrics)
    assert sum("factor_vae need one and are skipped" in r.getMessage() for r in caplog.records) == 1


def test_bad_image_folders_are_clear_errors(tmp_path):
    folder = tmp_path / "no_file_name"
    folder.mkdir()
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    (folder / "metadata.csv").write_text("path,size\na.png,1\n")
    with pytest.raises(ValueError, match="expected a 'file_name' column"):
        load_ground_truth(str(folder))
    (folder / "metadata.csv").write_text("file_name,colour\na.png,red\n")
    with pytest.raises(ValueError, match="not found|not numeric"):
        load_ground_truth(str(folder))
