"""MPI3D (Gondal et al. 2019): `mpi3d_toy.npz`, `mpi3d_realistic.npz`, `mpi3d_real.npz`."""

from pathlib import Path

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData
from concept_diffusion.data.npz import open_npz_array

EXPECTED = "an MPI3D .npz with one array 'images' (1036800, 64, 64, 3) uint8 ordered by the factor grid (6, 6, 2, 3, 3, 40, 40)"
FACTOR_SIZES = [6, 6, 2, 3, 3, 40, 40]
# The first release of mpi3d_toy had 4 colours and 4 shapes.
FIRST_RELEASE_SIZES = [4, 4, 2, 3, 3, 40, 40]
COLORS = ["white", "green", "red", "blue", "brown", "olive"]
SHAPES = ["cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere"]


class MPI3D(GroundTruthData):
    """MPI3D from its official .npz: object colour 6, shape 6, size 2, camera height 3,
    background colour 3, horizontal axis 40, vertical axis 40 (1,036,800 images).

    The file has no labels: images are in C order over the grid. An uncompressed archive is
    memory-mapped, so nothing is read until images are asked for. `factor_sizes` describes a
    smaller file in the same format (e.g. a test file); by default it is inferred from the
    number of images (1,036,800, or 460,800 for the first mpi3d_toy release).

    Example:
        >>> data = MPI3D("mpi3d_real.npz")
        >>> len(data)
        1036800
    """

    provenance = 'MPI3D (https://github.com/rr-learning/disentanglement_dataset), converted by concept-diffusion.'
    license = 'cc-by-4.0'
    citation = '@inproceedings{gondal2019transfer,\n  title={On the Transfer of Inductive Bias from Simulation to the Real World: a New Disentanglement Dataset},\n  author={Gondal, Muhammad Waleed and Wuthrich, Manuel and Miladinovic, Djordje and Locatello, Francesco and Breidt, Martin and Volchkov, Valentin and Akpo, Joel and Bachem, Olivier and Sch{\\"o}lkopf, Bernhard and Bauer, Stefan},\n  booktitle={NeurIPS},\n  year={2019}\n}'

    factor_names = ["object_color", "object_shape", "object_size", "camera_height",
                    "background_color", "horizontal_axis", "vertical_axis"]

    def __init__(self, path, factor_sizes=None):
        self.path = Path(path)
        images = open_npz_array(self.path, "images", EXPECTED)
        if images.ndim == 2 and images.shape[1] == 64 * 64 * 3:
            images = images.reshape(-1, 64, 64, 3)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"{self.path}: 'images' has shape {images.shape} and dtype {images.dtype}; expected {EXPECTED}")
        if factor_sizes is None:
            by_count = {int(np.prod(s)): s for s in (FACTOR_SIZES, FIRST_RELEASE_SIZES)}
            if images.shape[0] not in by_count:
                raise ValueError(
                    f"{self.path}: {images.shape[0]} images; expected {EXPECTED} (or 460800 for the first "
                    f"mpi3d_toy); for a subset pass factor_sizes=[...] whose product is the number of images"
                )
            factor_sizes = by_count[images.shape[0]]
        factor_sizes = [int(s) for s in factor_sizes]
        if len(factor_sizes) != 7 or int(np.prod(factor_sizes)) != images.shape[0]:
            raise ValueError(f"factor_sizes: expected 7 sizes whose product is {images.shape[0]} (the images in {self.path}), got {factor_sizes}")
        self.factor_sizes = factor_sizes
        self.observation_shape = tuple(int(s) for s in images.shape[1:])
        self._images = images
        names = [COLORS, SHAPES, ["small", "large"], ["top", "center", "bottom"], ["purple", "sea_green", "salmon"]]
        if factor_sizes[:5] == FACTOR_SIZES[:5]:
            self.factor_values = names + [[str(i) for i in range(s)] for s in factor_sizes[5:]]
        else:
            self.factor_values = None

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]

    def __getstate__(self):
        # A memmap pickles as a full copy; DataLoader workers map the file again instead.
        state = self.__dict__.copy()
        if isinstance(self._images, np.memmap):
            state["_images"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._images is None:
            self._images = open_npz_array(self.path, "images", EXPECTED).reshape(-1, *self.observation_shape)
