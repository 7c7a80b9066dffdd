"""DeepMind's `3dshapes.h5` (Burgess & Kim 2018), read lazily through h5py."""

from pathlib import Path

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData, check_c_order_grid, grid_codes
from concept_diffusion.data.shapes3d_procedural import SHAPES3D_CITATION, Shapes3DProcedural

EXPECTED = "DeepMind's 3dshapes.h5 with datasets 'images' (N, 64, 64, 3) uint8 and 'labels' (N, 6) float64"
OFFICIAL_VALUES = [
    np.round(np.linspace(0.0, 0.9, 10), 6),
    np.round(np.linspace(0.0, 0.9, 10), 6),
    np.round(np.linspace(0.0, 0.9, 10), 6),
    np.round(np.linspace(0.75, 1.25, 8), 6),
    np.arange(4.0),
    np.round(np.linspace(-30.0, 30.0, 15), 6),
]


class Shapes3D(GroundTruthData):
    """The images and labels of `3dshapes.h5`, ordered by the factor grid in C order.

    The grid is read from the labels (480,000 images, factor sizes 10, 10, 10, 8, 4, 15 in the
    official file); a smaller file in the same format with a complete sub-grid also works.
    Images stay on disk and are read per batch (`in_memory=False`, the default), or are read once
    into a uint8 array (`in_memory=True`, 5.9 GB for the full file, never a second copy).

    Example:
        >>> data = Shapes3D("3dshapes.h5")
        >>> data.factor_sizes
        [10, 10, 10, 8, 4, 15]
    """

    provenance = "DeepMind's 3dshapes.h5 (https://github.com/deepmind/3dshapes-dataset), converted by concept-diffusion."
    license = 'apache-2.0'
    citation = SHAPES3D_CITATION

    factor_names = Shapes3DProcedural.factor_names

    def __init__(self, path, in_memory: bool = False):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file; expected {EXPECTED}")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("images", "labels") if k not in f]
                if missing:
                    raise ValueError(f"{self.path}: no dataset {missing} (found {sorted(f.keys())}); expected {EXPECTED}")
                images, labels = f["images"], f["labels"]
                if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
                    raise ValueError(f"{self.path}: 'images' has shape {images.shape} and dtype {images.dtype}; expected {EXPECTED}")
                if labels.shape != (images.shape[0], 6):
                    raise ValueError(f"{self.path}: 'labels' has shape {labels.shape}, 'images' {images.shape}; expected {EXPECTED}")
                labels = np.asarray(labels[:], dtype=np.float64)
                self.observation_shape = tuple(int(s) for s in images.shape[1:])
                self._in_memory = images[:] if in_memory else None
        except OSError as error:
            raise ValueError(f"{self.path}: not a readable HDF5 file ({error}); expected {EXPECTED}; the file may be truncated") from None

        codes, values = grid_codes(np.round(labels, 6))
        for name, found, official in zip(self.factor_names, values, OFFICIAL_VALUES):
            unknown = np.setdiff1d(found, official)
            if unknown.size:
                raise ValueError(f"{self.path}: {name} labels {unknown[:5].tolist()} are not Shapes3D values {official.tolist()}; expected {EXPECTED}")
        self.factor_sizes = [len(v) for v in values]
        check_c_order_grid(codes, self.factor_sizes, str(self.path), self.factor_names)
        shapes = Shapes3DProcedural.factor_values[4]
        self.factor_values = [
            [f"{v:.1f}" for v in values[0]],
            [f"{v:.1f}" for v in values[1]],
            [f"{v:.1f}" for v in values[2]],
            [f"{v:.3f}" for v in values[3]],
            [shapes[int(v)] for v in values[4]],
            [f"{v:.1f}deg" for v in values[5]],
        ]
        self._file = None

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        if self._in_memory is not None:
            return self._in_memory[indices]
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
        # h5py reads only increasing, distinct indices; read those once, then restore the order.
        unique, inverse = np.unique(indices, return_inverse=True)
        return self._file["images"][unique][inverse.reshape(-1)]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None   # h5py handles do not pickle; each DataLoader worker opens its own
        return state
