"""`datasets` conversion, loading back from a folder and from the (local test) Hub, and the CLI."""

import argparse

import datasets
import numpy as np
import pytest

from concept_diffusion.cli import data as data_cli
from concept_diffusion.data import (
    DSpritesProcedural,
    HFGroundTruthData,
    Shapes3DProcedural,
    load_ground_truth,
    push_ground_truth_to_hub,
    to_hf_dataset,
)


class TinyShapes3D(Shapes3DProcedural):
    factor_sizes = [2, 2, 2, 2, 2, 2]       # the first values of each factor: 64 images

    factor_values = [v[:2] for v in Shapes3DProcedural.factor_values]


@pytest.fixture(scope="module")
def tiny():
    return TinyShapes3D(image_size=16)


def test_to_hf_dataset_columns(tiny):
    ds = to_hf_dataset(tiny)
    assert list(ds.features) == ["image", *tiny.factor_names]
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["shape"].names == ["cube", "cylinder"]
    assert len(ds) == 64 and ds[5]["orientation"] == 1 and ds[5]["shape"] == 0 and ds[5]["scale"] == 1
    np.testing.assert_array_equal(np.asarray(ds[5]["image"]), tiny._images_uint8(np.array([5]))[0])


def test_saved_folder_loads_back_identical(tiny, tmp_path):
    to_hf_dataset(tiny).save_to_disk(str(tmp_path / "tiny"))
    data = load_ground_truth(tmp_path / "tiny")
    assert isinstance(data, HFGroundTruthData)
    assert data.factor_names == tiny.factor_names and data.factor_sizes == tiny.factor_sizes
    assert data.factor_values[4] == ["cube", "cylinder"] and data.observation_shape == (16, 16, 3)
    factors = tiny.sample_factors(10, np.random.RandomState(0))
    np.testing.assert_array_equal(
        data.sample_observations_from_factors(factors, np.random.RandomState(0)),
        tiny._images_uint8(tiny.factors_to_index(factors)) / np.float32(255),   # stored as PNG, so uint8
    )
    batch = next(iter(data.dataloader(batch_size=8)))
    assert batch["images"].shape == (8, 3, 16, 16)


def test_grayscale_and_shuffled_rows(tmp_path):
    class TinyDSprites(DSpritesProcedural):
        factor_sizes = [3, 1, 2, 2, 1]
        factor_values = None

    tiny = TinyDSprites(image_size=16)
    ds = to_hf_dataset(tiny).shuffle(seed=0)
    data = HFGroundTruthData(ds)
    assert data.observation_shape == (16, 16, 1)
    np.testing.assert_array_equal(data.images(np.arange(12)), tiny._images_uint8(np.arange(12)) / np.float32(255))
    np.testing.assert_array_equal(data.index_to_factors(np.arange(12)), tiny.index_to_factors(np.arange(12)))


def test_datasets_source_errors(tiny):
    ds = to_hf_dataset(tiny)
    with pytest.raises(ValueError, match=r"factor columns \['hue'\] not found"):
        HFGroundTruthData(ds, factor_names=["hue"])
    with pytest.raises(ValueError, match="factor columns none not found"):
        HFGroundTruthData(ds.remove_columns(tiny.factor_names))
    with pytest.raises(ValueError, match="no 'image' column"):
        HFGroundTruthData(ds.rename_column("image", "picture"))
    with pytest.raises(ValueError, match="combinations are missing"):
        HFGroundTruthData(ds.select(range(63)))
    # Plain integer columns are factors too, sized by their largest value.
    plain = ds.cast(datasets.Features({"image": datasets.Image(), **{n: datasets.Value("int64") for n in tiny.factor_names}}))
    assert HFGroundTruthData(plain).factor_sizes == [2] * 6


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_cli_list_preview_convert(tmp_path, capsys):
    assert run_cli("list") == 0
    assert "shapes3d-procedural" in capsys.readouterr().out
    assert run_cli("preview", "dsprites-procedural", "--image-size", "32", "--out", str(tmp_path / "grid.png")) == 0
    from PIL import Image

    grid = Image.open(tmp_path / "grid.png")
    assert grid.height == 5 * 64          # one row per factor
    assert run_cli("convert", "dsprites-procedural", "--image-size", "16", "--limit", "20", "--out", str(tmp_path / "ds")) == 0
    assert len(datasets.load_from_disk(str(tmp_path / "ds"))) == 20
    with pytest.raises(ValueError, match="--out"):
        run_cli("preview", "dsprites-procedural", "--out", str(tmp_path / "grid.jpg"))


def test_push_to_hub_and_load_back(tiny, hub_server, hub_repo_id):
    from huggingface_hub import DatasetCard

    url = push_ground_truth_to_hub(tiny, hub_repo_id)
    assert hub_repo_id in url
    card = DatasetCard.load(hub_repo_id, repo_type="dataset")
    assert card.data.license == "apache-2.0" and "disentanglement" in card.data.tags
    assert "dataset_info" in card.data.to_dict()                   # datasets' metadata kept
    assert "| `orientation` | 2 |" in card.text and "3dshapes18" in card.text
    data = load_ground_truth(hub_repo_id)
    assert data.factor_names == tiny.factor_names and data.factor_sizes == tiny.factor_sizes
    np.testing.assert_array_equal(data._images_uint8(np.arange(64)), tiny._images_uint8(np.arange(64)))


def test_a_labelled_subset_pushes_and_loads_back_without_a_grid(tiny, hub_server, hub_repo_id):
    from huggingface_hub import DatasetCard

    from concept_diffusion.data import LabelledImages

    subset = to_hf_dataset(tiny).select(range(40))      # 40 of the 64 combinations
    push_ground_truth_to_hub(subset, hub_repo_id)
    assert "40 images labelled with 6 known factors" in DatasetCard.load(hub_repo_id, repo_type="dataset").text
    data = load_ground_truth(hub_repo_id)
    assert isinstance(data, LabelledImages) and data.factor_sizes == tiny.factor_sizes
    factors, images = data.sample(10, np.random.RandomState(0))
    rows = np.random.RandomState(0).randint(40, size=10)
    np.testing.assert_array_equal(factors, tiny.index_to_factors(rows))
    np.testing.assert_array_equal(np.rint(images * 255).astype(np.uint8), tiny._images_uint8(rows))
