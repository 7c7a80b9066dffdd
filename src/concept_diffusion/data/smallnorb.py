"""SmallNORB (LeCun et al. 2004): the six `smallnorb-*-{dat,cat,info}.mat` files, NORB binary matrices."""

from pathlib import Path

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData, grid_codes

CHUNKS = ["5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing"]
EXPECTED = ("a folder with SmallNORB's smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat and "
            "smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat (NORB binary matrix files)")
MAGIC_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64}
CATEGORIES = ["animal", "human", "airplane", "truck", "car"]


def read_norb_matrix(path: Path) -> np.ndarray:
    """One NORB binary matrix: int32 magic (element type), int32 ndim, max(3, ndim) int32 dims, data."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {EXPECTED}")
    raw = path.read_bytes()
    if len(raw) < 20:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a NORB matrix header; expected {EXPECTED}")
    magic, ndim = (int(x) for x in np.frombuffer(raw, "<i4", 2))
    if magic not in MAGIC_DTYPES or not 1 <= ndim <= 8:
        raise ValueError(f"{path}: header magic {magic:#x} / ndim {ndim} is not a NORB matrix; expected {EXPECTED}")
    header_dims = max(3, ndim)
    dims = [int(d) for d in np.frombuffer(raw, "<i4", header_dims, 8)[:ndim]]
    dtype = np.dtype(MAGIC_DTYPES[magic]).newbyteorder("<")
    offset = 8 + 4 * header_dims
    needed = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset < needed:
        raise ValueError(f"{path}: header says {dims} but the file holds {len(raw) - offset} of {needed} data bytes: it is truncated")
    return np.frombuffer(raw, dtype, int(np.prod(dims)), offset).reshape(dims)


class SmallNORB(GroundTruthData):
    """SmallNORB, both chunks (48,600 images), left camera, resized to `image_size` (grayscale).

    Factors, as in disentanglement_lib: category 5, elevation 9, azimuth 18, lighting 6. The
    object instance (10 per category) is a nuisance factor: `sample_indices_from_factors`
    draws it with `random_state.randint(10)`, as disentanglement_lib does. Indices run over
    all images in C order of (category, instance, elevation, azimuth, lighting);
    `factors_to_index` picks instance 0 of each category.

    Example:
        >>> data = SmallNORB("data/small_norb")
        >>> data.factor_sizes
        [5, 9, 18, 6]
    """

    provenance = 'SmallNORB (https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/), left camera, resized and converted by concept-diffusion.'
    license = 'other'
    citation = '@inproceedings{lecun2004learning,\n  title={Learning Methods for Generic Object Recognition with Invariance to Pose and Lighting},\n  author={LeCun, Yann and Huang, Fu Jie and Bottou, Leon},\n  booktitle={CVPR},\n  year={2004}\n}'

    factor_names = ["category", "elevation", "azimuth", "lighting"]

    def __init__(self, folder, image_size: int = 64):
        from PIL import Image

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; expected {EXPECTED}")
        images, labels = [], []
        for chunk in CHUNKS:
            dat, cat, info = (read_norb_matrix(folder / f"smallnorb-{chunk}-{part}.mat") for part in ("dat", "cat", "info"))
            if dat.ndim != 4 or dat.shape[1] != 2 or cat.shape != (dat.shape[0],) or info.shape != (dat.shape[0], 4):
                raise ValueError(
                    f"{folder}: smallnorb-{chunk}: dat {dat.shape}, cat {cat.shape}, info {info.shape}; expected "
                    f"dat (N, 2, 96, 96) uint8, cat (N,) int32, info (N, 4) int32"
                )
            for picture in dat[:, 0]:
                images.append(np.asarray(Image.fromarray(picture).resize((image_size, image_size), Image.LANCZOS)))
            labels.append(np.column_stack([cat, info]))      # category, instance, elevation, azimuth, lighting
        labels = np.concatenate(labels).astype(np.int64)
        labels[:, 3] //= 2                                     # azimuths are stored as 0, 2, ..., 34

        codes, values = grid_codes(labels)
        self._all_sizes = [len(v) for v in values]
        flat = np.ravel_multi_index(tuple(codes.T), self._all_sizes)
        if len(flat) != int(np.prod(self._all_sizes)) or len(np.unique(flat)) != len(flat):
            raise ValueError(
                f"{folder}: labels do not form the expected grid: {len(flat)} images, "
                f"{len(np.unique(flat))} distinct (category, instance, elevation, azimuth, lighting), "
                f"expected each of the {int(np.prod(self._all_sizes))} combinations once; a file is missing or truncated"
            )
        order = np.argsort(flat)
        self._images = np.stack(images)[order][..., None]
        self.factor_sizes = [self._all_sizes[i] for i in (0, 2, 3, 4)]
        self.observation_shape = (image_size, image_size, 1)
        self.factor_values = [
            [CATEGORIES[int(c)] if 0 <= c < 5 else str(c) for c in values[0]],
            [f"{30 + 5 * int(e)}deg" for e in values[2]],
            [f"{20 * int(a)}deg" for a in values[3]],
            [str(int(v)) for v in values[4]],
        ]

    def __len__(self) -> int:
        return len(self._images)

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]

    def index_to_factors(self, indices) -> np.ndarray:
        full = np.stack(np.unravel_index(self._check_indices(indices), self._all_sizes), axis=1)
        return full[:, [0, 2, 3, 4]].astype(np.int64)

    def factors_to_index(self, factors, instances=None) -> np.ndarray:
        """Indices of the images with these factors and object `instances` (default: instance 0)."""
        factors = self._check_factors(factors)
        instances = np.zeros(len(factors), dtype=np.int64) if instances is None else np.asarray(instances)
        full = np.column_stack([factors[:, 0], instances, factors[:, 1:]])
        return np.ravel_multi_index(tuple(full.T), self._all_sizes).astype(np.int64)

    def sample_indices_from_factors(self, factors, random_state: np.random.RandomState) -> np.ndarray:
        factors = self._check_factors(factors)
        instances = random_state.randint(self._all_sizes[1], size=len(factors))
        return self.factors_to_index(factors, instances)
