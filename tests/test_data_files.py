"""Readers for the official files: tiny files written in exactly the official formats, read back."""

import itertools

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from concept_diffusion.data import MPI3D, Cars3D, DSprites, Shapes3D, SmallNORB, load_ground_truth
from concept_diffusion.data.smallnorb import read_norb_matrix

SHAPES3D_VALUES = [[0.0, 0.5], [0.1, 0.2], [0.9], [0.75, 1.25], [0.0, 3.0], [-30.0, 0.0, 30.0]]


def grid(values):
    return np.array(list(itertools.product(*values)), dtype=np.float64)


def coded_images(n, size, channels):
    """Image i is filled with the value i (mod 256): which image came back is easy to check."""
    return np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, size, size, channels)).copy()


def write_3dshapes(path, labels=None, images=None):
    labels = grid(SHAPES3D_VALUES) if labels is None else labels
    images = coded_images(len(labels), 8, 3) if images is None else images
    with h5py.File(path, "w") as f:
        # The official file stores gzip-compressed chunks.
        f.create_dataset("images", data=images, chunks=(4, 8, 8, 3), compression="gzip")
        f.create_dataset("labels", data=labels)
    return path


def test_3dshapes_h5(tmp_path):
    data = load_ground_truth(write_3dshapes(tmp_path / "3dshapes.h5"))
    assert isinstance(data, Shapes3D)
    assert data.factor_sizes == [2, 2, 1, 2, 2, 3] and len(data) == 48
    assert data.factor_values[4] == ["cube", "capsule"] and data.factor_values[5] == ["-30.0deg", "0.0deg", "30.0deg"]
    assert data.observation_shape == (8, 8, 3)
    indices = np.array([47, 3, 3, 20])
    images = data.images(indices)
    np.testing.assert_allclose(images[:, 0, 0, 0], indices / 255.0, rtol=1e-6)
    factors = data.sample_factors(10, np.random.RandomState(0))
    observed = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    np.testing.assert_allclose(observed[:, 0, 0, 0] * 255, data.factors_to_index(factors), atol=1e-4)
    in_memory = Shapes3D(tmp_path / "3dshapes.h5", in_memory=True)
    np.testing.assert_array_equal(in_memory.images(indices), images)


def test_3dshapes_is_read_lazily(tmp_path):
    data = Shapes3D(write_3dshapes(tmp_path / "3dshapes.h5"))
    assert data._in_memory is None and data._file is None      # nothing but the labels read yet
    batch = next(iter(data.dataloader(batch_size=4, num_workers=1)))
    assert batch["images"].shape == (4, 3, 8, 8)


def test_3dshapes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="3dshapes.h5"):
        load_ground_truth(tmp_path / "3dshapes.h5")
    labels = grid(SHAPES3D_VALUES)
    with pytest.raises(ValueError, match="C order"):
        Shapes3D(write_3dshapes(tmp_path / "shuffled.h5", labels=labels[::-1].copy()))
    with pytest.raises(ValueError, match="expected factor grid"):
        Shapes3D(write_3dshapes(tmp_path / "missing.h5", labels=labels[:-1]))
    odd = labels.copy()
    odd[:, 3] *= 2
    with pytest.raises(ValueError, match="scale labels"):
        Shapes3D(write_3dshapes(tmp_path / "odd.h5", labels=odd))
    full = (tmp_path / "3dshapes.h5")
    write_3dshapes(full)
    (tmp_path / "cut.h5").write_bytes(full.read_bytes()[:2000])
    with pytest.raises(ValueError, match="cut.h5"):
        load_ground_truth(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "nolabels.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'labels'"):
        Shapes3D(tmp_path / "nolabels.h5")


def write_dsprites(path, sizes=(3, 2, 2, 2, 2), size=8, shuffle=False):
    classes = np.array(list(itertools.product([0], *[range(s) for s in sizes])), dtype=np.int64)
    if shuffle:
        classes = classes[::-1].copy()
    values = classes.astype(np.float64)
    values[:, 3] = classes[:, 3] * (2 * np.pi / 39)
    values[:, 4] = classes[:, 4] / 31
    values[:, 5] = classes[:, 5] / 31
    imgs = (np.arange(len(classes)) % 2).astype(np.uint8)[:, None, None] * np.ones((1, size, size), np.uint8)
    # The official archive also holds a pickled 'metadata' dict: it must be left unread.
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=values,
                        metadata=np.array({"title": "dSprites"}, dtype=object))
    return path


def test_dsprites_npz(tmp_path):
    data = load_ground_truth(write_dsprites(tmp_path / "dsprites.npz"))
    assert isinstance(data, DSprites)
    assert data.factor_sizes == [3, 2, 2, 2, 2] and data.observation_shape == (8, 8, 1)
    assert data.factor_values[0] == ["square", "ellipse", "heart"]
    assert data.factor_values[2] == ["0.0deg", "9.2deg"]
    np.testing.assert_array_equal(data.images([0, 1, 2])[:, 0, 0, 0], [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="C order"):
        DSprites(write_dsprites(tmp_path / "shuffled.npz", shuffle=True))


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "other.npz", pixels=np.zeros(3))
    with pytest.raises(ValueError, match="'imgs' \\(dSprites\\) or 'images' \\(MPI3D\\)"):
        load_ground_truth(tmp_path / "other.npz")
    (tmp_path / "cut.npz").write_bytes(write_dsprites(tmp_path / "d.npz").read_bytes()[:500])
    with pytest.raises(ValueError, match="cut.npz"):
        load_ground_truth(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError, match="mpi3d_toy.npz"):
        load_ground_truth(tmp_path / "mpi3d_toy.npz")


def test_mpi3d_npz_is_memory_mapped(tmp_path):
    sizes = [2, 1, 2, 1, 1, 3, 2]
    images = coded_images(int(np.prod(sizes)), 8, 3)
    np.savez(tmp_path / "mpi3d_toy.npz", images=images)        # the official archives are uncompressed
    data = load_ground_truth(tmp_path / "mpi3d_toy.npz", factor_sizes=sizes)
    assert isinstance(data, MPI3D) and isinstance(data._images, np.memmap)
    assert data.factor_names[0] == "object_color" and len(data) == 24
    np.testing.assert_allclose(data.images(data.factors_to_index([[1, 0, 1, 0, 0, 2, 1]]))[0, 0, 0, 0] * 255, 23, atol=1e-4)
    batch = next(iter(data.dataloader(batch_size=4, num_workers=1)))     # workers map the file again
    assert batch["images"].shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="1036800"):
        MPI3D(tmp_path / "mpi3d_toy.npz")
    with pytest.raises(ValueError, match="factor_sizes"):
        MPI3D(tmp_path / "mpi3d_toy.npz", factor_sizes=[2, 2, 2, 1, 1, 3, 2])


def test_cars3d_mat_folder(tmp_path):
    folder = tmp_path / "cars"
    folder.mkdir()
    for car in range(2):
        im = np.zeros((16, 16, 3, 24, 4), dtype=np.uint8)
        for azimuth, elevation in itertools.product(range(24), range(4)):
            im[:, :, :, azimuth, elevation] = (10 * azimuth, 50 * elevation, 100 * car)
        savemat(folder / f"car_{car + 1:03d}_mesh.mat", {"im": im})
    data = load_ground_truth(folder, image_size=8)
    assert isinstance(data, Cars3D)
    assert data.factor_sizes == [4, 24, 2] and len(data) == 192 and data.observation_shape == (8, 8, 3)
    pixel = data.images(data.factors_to_index([[3, 7, 1]]))[0, 4, 4] * 255
    np.testing.assert_allclose(pixel, [70, 150, 100], atol=1)
    assert len({data.images([i]).tobytes() for i in range(len(data))}) == len(data)   # each image once
    savemat(folder / "car_003_mesh.mat", {"im": np.zeros((16, 16, 3, 24, 3), np.uint8)})
    with pytest.raises(ValueError, match="car_003_mesh.mat.*24, 4"):
        Cars3D(folder)


def write_norb(path, array):
    magic = {np.uint8: 0x1E3D4C55, np.int32: 0x1E3D4C54}[array.dtype.type]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    path.write_bytes(header + array.tobytes())


def write_smallnorb(folder, drop_last=False):
    folder.mkdir(exist_ok=True)
    for chunk, instance in (("5x46789x9x18x6x2x96x96-training", 4), ("5x01235x9x18x6x2x96x96-testing", 0)):
        rows = [(c, instance, e, a, 0) for c in range(2) for e in range(2) for a in (0, 2, 4)]
        rows = rows[::-1]                      # the real files are not in grid order
        if drop_last and instance == 0:
            rows = rows[:-1]
        cat = np.array([r[0] for r in rows], np.int32)
        info = np.array([r[1:] for r in rows], np.int32)
        dat = np.zeros((len(rows), 2, 12, 12), np.uint8)
        for k, (c, inst, e, a, _) in enumerate(rows):
            dat[k, 0] = 100 * c + 20 * e + 5 * (a // 2) + inst
        write_norb(folder / f"smallnorb-{chunk}-dat.mat", dat)
        write_norb(folder / f"smallnorb-{chunk}-cat.mat", cat)
        write_norb(folder / f"smallnorb-{chunk}-info.mat", info)
    return folder


def test_smallnorb_binary_files(tmp_path):
    folder = write_smallnorb(tmp_path / "norb")
    np.testing.assert_array_equal(read_norb_matrix(folder / "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat"), [1] * 6 + [0] * 6)
    data = load_ground_truth(folder, image_size=8)
    assert isinstance(data, SmallNORB)
    assert data.factor_names == ["category", "elevation", "azimuth", "lighting"]
    assert data.factor_sizes == [2, 2, 3, 1] and len(data) == 24 and data.observation_shape == (8, 8, 1)
    assert data.factor_values[0] == ["animal", "human"]
    index = data.factors_to_index([[1, 1, 2, 0]], instances=[1])     # instance values are (0, 4)
    assert data.images(index)[0, 4, 4, 0] * 255 == pytest.approx(100 + 20 + 10 + 4, abs=1)
    np.testing.assert_array_equal(data.index_to_factors(index), [[1, 1, 2, 0]])
    # The instance is drawn from random_state, as in disentanglement_lib.
    pixels = data.sample_observations_from_factors(np.array([[0, 0, 0, 0]] * 20), np.random.RandomState(0))[:, 4, 4, 0]
    assert set(np.round(pixels * 255).astype(int)) == {0, 4}


def test_smallnorb_errors(tmp_path):
    with pytest.raises(ValueError, match="each of the 24 combinations once"):
        SmallNORB(write_smallnorb(tmp_path / "short", drop_last=True))
    folder = write_smallnorb(tmp_path / "cut")
    dat = folder / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat"
    dat.write_bytes(dat.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        SmallNORB(folder)
    folder = write_smallnorb(tmp_path / "missing")
    (folder / "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat").unlink()
    with pytest.raises(FileNotFoundError, match="testing-info.mat"):
        SmallNORB(folder)


def test_unrecognised_folder(tmp_path):
    with pytest.raises(ValueError, match="Cars3D folder"):
        load_ground_truth(tmp_path)
