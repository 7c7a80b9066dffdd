"""The procedural generators and the interface they speak."""

import numpy as np
import pytest
import torch

from concept_diffusion.data import DSpritesProcedural, Shapes3DProcedural, list_ground_truth, load_ground_truth


@pytest.fixture(scope="module")
def shapes3d():
    return load_ground_truth("shapes3d-procedural", image_size=16)


@pytest.fixture(scope="module")
def dsprites():
    return load_ground_truth("dsprites-procedural", image_size=32)


def test_grids_match_the_originals(shapes3d, dsprites):
    assert shapes3d.factor_sizes == [10, 10, 10, 8, 4, 15] and len(shapes3d) == 480_000
    assert shapes3d.factor_values[4] == ["cube", "cylinder", "sphere", "capsule"]
    assert dsprites.factor_sizes == [3, 6, 40, 32, 32] and len(dsprites) == 737_280
    assert dsprites.factor_values[0] == ["square", "ellipse", "heart"]
    assert set(list_ground_truth()) == {"shapes3d-procedural", "dsprites-procedural", "colour-dsprites-procedural"}


@pytest.mark.parametrize("size", [32, 64, 128])
def test_any_resolution(size):
    data = DSpritesProcedural(image_size=size)
    images = data.images([0, 12345])
    assert images.shape == (2, size, size, 1) and images.dtype == np.float32
    assert data.observation_shape == (size, size, 1) and data.image_size == size and data.num_channels == 1


def test_colour_dsprites_colours_dsprites_shapes_in_hue_and_brightness(dsprites):
    colour = load_ground_truth("colour-dsprites-procedural", image_size=32)
    assert colour.factor_names == ["hue", "brightness", *dsprites.factor_names]
    assert colour.factor_sizes == [6, 4, 3, 6, 40, 32, 32] and colour.num_channels == 3
    sprite = np.array([[2, 5, 0, 16, 16]])
    mask = dsprites.render(sprite)[0, ..., 0]
    dim, bright = (colour.render(np.array([[0, value, *sprite[0]]]))[0] for value in (0, 3))
    np.testing.assert_allclose(bright.max(axis=-1), mask, atol=1e-6)  # the brightest red: value 1 where dSprites is white
    assert dim.mean() == pytest.approx(0.4 * bright.mean(), rel=1e-5)  # brightness scales the intensity, not only the hue
    assert bright[mask == 1].std(axis=0).max() < 1e-6 and bright[mask == 0].max() == 0  # one colour (edges: partly) on black
    # each step of the two colour factors changes every sprite (the small heart's turn by one step can be invisible,
    # as in dSprites itself, so the sprite factors are not checked here)
    for base in colour.sample_factors(20, np.random.RandomState(0)):
        for factor in (0, 1):
            steps = np.repeat(base[None], colour.factor_sizes[factor], axis=0)
            steps[:, factor] = np.arange(colour.factor_sizes[factor])
            images = colour.render(steps)
            assert (np.abs(np.diff(images, axis=0)).reshape(len(steps) - 1, -1).max(axis=1) > 0).all(), (factor, base)


def test_shapes3d_renders_rgb_in_unit_range(shapes3d):
    images = shapes3d.sample_observations(8, np.random.RandomState(0))
    assert images.shape == (8, 16, 16, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05


def test_sample_factors_draws_exactly_like_disentanglement_lib(shapes3d):
    factors = shapes3d.sample_factors(50, np.random.RandomState(7))
    rng = np.random.RandomState(7)
    expected = np.stack([rng.randint(size, size=50) for size in shapes3d.factor_sizes], axis=1)
    np.testing.assert_array_equal(factors, expected)
    assert factors.dtype == np.int64


def test_rendering_is_deterministic():
    factors = np.array([[1, 2, 3, 4, 1, 5], [9, 0, 5, 7, 3, 14]])
    a = Shapes3DProcedural(image_size=16).render(factors)
    b = Shapes3DProcedural(image_size=16).render(factors)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["shapes3d-procedural", "dsprites-procedural"])
def test_every_factor_changes_the_image_on_its_own(name):
    data = load_ground_truth(name, image_size=32)
    rng = np.random.RandomState(0)
    for base in data.sample_factors(3, rng):
        for i, size in enumerate(data.factor_sizes):
            for value in range(size - 1):
                a, b = base.copy(), base.copy()
                a[i], b[i] = value, value + 1
                images = data.sample_observations_from_factors(np.stack([a, b]), rng)
                assert np.abs(images[0] - images[1]).max() > 0, f"{data.factor_names[i]} {value} -> {value + 1} invisible at {base}"


def test_shapes3d_orientation_is_visible_for_the_sphere():
    data = Shapes3DProcedural(image_size=32)
    factors = np.array([[0, 3, 6, 4, 2, o] for o in range(15)])
    images = data.render(factors)
    assert all(np.abs(images[k] - images[k + 1]).mean() > 1e-3 for k in range(14))


def test_dsprites_only_duplicates_are_the_originals():
    # As in the original, orientation runs over linspace(0, 2 pi, 40): values 0 and 39 are the same angle.
    data = DSpritesProcedural(image_size=64)
    for shape in range(3):
        rows = np.array([[shape, 5, o, 16, 16] for o in range(40)])
        images = data.render(rows).reshape(40, -1)
        np.testing.assert_array_equal(images[0], images[39])
        distinct = {images[o].tobytes() for o in range(39)}
        assert len(distinct) == 39


def test_index_and_factors_round_trip(shapes3d):
    indices = np.array([0, 1, 479_999, 123_456])
    factors = shapes3d.index_to_factors(indices)
    np.testing.assert_array_equal(shapes3d.factors_to_index(factors), indices)
    np.testing.assert_array_equal(factors[2], [9, 9, 9, 7, 3, 14])
    np.testing.assert_array_equal(shapes3d.index_to_factors([1])[0], [0, 0, 0, 0, 0, 1])


def test_bad_factors_and_indices_are_named(shapes3d):
    with pytest.raises(ValueError, match="scale = 8 is out of range"):
        shapes3d.sample_observations_from_factors(np.array([[0, 0, 0, 8, 0, 0]]), np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"shape \(num, 6\)"):
        shapes3d.factors_to_index(np.zeros((2, 5), dtype=int))
    with pytest.raises(ValueError, match="indices"):
        shapes3d.images([480_000])
    with pytest.raises(ValueError, match="image_size"):
        load_ground_truth("shapes3d-procedural", image_size=4)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="shapes3d-procedural"):
        load_ground_truth("shapes4d")


def test_dataloader_yields_model_ready_batches(dsprites):
    loader = dsprites.dataloader(batch_size=16, seed=3)
    batch = next(iter(loader))
    assert batch["images"].shape == (16, 1, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["factors"].shape == (16, 5) and batch["factors"].dtype == torch.int64
    assert batch["images"].min() >= -1.0 and batch["images"].max() <= 1.0
    expected = dsprites.images(dsprites.factors_to_index(batch["factors"].numpy())) * 2 - 1
    # The loader goes through uint8, as stored data sets do.
    np.testing.assert_allclose(batch["images"].permute(0, 2, 3, 1).numpy(), expected, atol=2 / 255)
    again = next(iter(dsprites.dataloader(batch_size=16, seed=3)))
    assert torch.equal(batch["factors"], again["factors"])
    other = next(iter(dsprites.dataloader(batch_size=16, seed=4)))
    assert not torch.equal(batch["factors"], other["factors"])


def test_dataloader_with_workers_and_single_items(shapes3d):
    item = shapes3d.torch_dataset()[5]
    assert item["images"].shape == (3, 16, 16) and item["factors"].tolist() == [0, 0, 0, 0, 0, 5]
    loader = shapes3d.dataloader(batch_size=8, shuffle=False, num_workers=1)
    batches = iter(loader)
    first = next(batches)
    assert first["factors"][:, -1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_memmap_cache_serves_the_same_images(tmp_path):
    class Tiny(DSpritesProcedural):
        factor_sizes = [3, 2, 2, 2, 2]     # a small grid so the whole cache is written quickly

    data = Tiny(image_size=16, cache_dir=tmp_path)
    cached = data.images([5, 0, 47, 5])
    assert (tmp_path / "dsprites-procedural-16px.npy").exists()
    # The cache stores uint8: grey edge pixels come back rounded to the nearest 1/255.
    np.testing.assert_allclose(cached, Tiny(image_size=16).images([5, 0, 47, 5]), atol=0.5 / 255 + 1e-6)
