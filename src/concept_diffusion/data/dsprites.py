"""The official dSprites archive `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` (Matthey et al. 2017)."""

from pathlib import Path

import numpy as np

from concept_diffusion.data.dsprites_procedural import DSPRITES_CITATION, DSpritesProcedural
from concept_diffusion.data.ground_truth import GroundTruthData, check_c_order_grid
from concept_diffusion.data.npz import open_npz_array

EXPECTED = ("the dSprites .npz with arrays 'imgs' (N, 64, 64) uint8, 'latents_classes' (N, 6) int "
            "and 'latents_values' (N, 6) float (color, shape, scale, orientation, posX, posY)")


class DSprites(GroundTruthData):
    """dSprites from its official .npz: shape 3, scale 6, orientation 40, x 32, y 32 (737,280 images).

    Images are (64, 64, 1) with values 0 or 1. The constant `color` latent is left out, as in
    disentanglement_lib. The grid is read from `latents_classes`, so a smaller file in the same
    format with a complete sub-grid also works. The archive is compressed, so `imgs` is read once
    into memory (3 GB for the full file).

    Example:
        >>> data = DSprites("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
        >>> data.factor_names
        ['shape', 'scale', 'orientation', 'position_x', 'position_y']
    """

    provenance = "DeepMind's dSprites .npz (https://github.com/deepmind/dsprites-dataset), converted by concept-diffusion."
    license = 'apache-2.0'
    citation = DSPRITES_CITATION

    factor_names = DSpritesProcedural.factor_names

    def __init__(self, path):
        self.path = Path(path)
        imgs = open_npz_array(self.path, "imgs", EXPECTED)
        classes = np.asarray(open_npz_array(self.path, "latents_classes", EXPECTED))
        values = np.asarray(open_npz_array(self.path, "latents_values", EXPECTED))
        if imgs.ndim != 3 or classes.shape != (imgs.shape[0], 6) or values.shape != classes.shape:
            raise ValueError(
                f"{self.path}: 'imgs' {imgs.shape}, 'latents_classes' {classes.shape}, 'latents_values' "
                f"{values.shape}; expected {EXPECTED}"
            )
        if not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"{self.path}: 'latents_classes' has dtype {classes.dtype}; expected {EXPECTED}")
        if np.ptp(classes[:, 0]) != 0:
            raise ValueError(f"{self.path}: the color latent varies; expected {EXPECTED}")
        classes = classes[:, 1:]
        sizes = [int(classes[:, i].max()) + 1 for i in range(5)]
        self.factor_sizes = sizes
        check_c_order_grid(classes.astype(np.int64), sizes, str(self.path), self.factor_names)
        self.observation_shape = (int(imgs.shape[1]), int(imgs.shape[2]), 1)
        self._imgs = imgs

        # In a C-order grid, value c of factor i first appears at row c * stride_i.
        strides = np.cumprod([1, *sizes[::-1]])[:-1][::-1]
        shapes = DSpritesProcedural.factor_values[0]
        self.factor_values = [shapes[: sizes[0]]]
        for i in range(1, 5):
            names = values[np.arange(sizes[i]) * strides[i], i + 1]
            self.factor_values.append([f"{np.degrees(v):.1f}deg" if i == 2 else f"{v:.3f}" for v in names])

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        # The file stores 0/1 pixels; as 0/255 they go through the uint8 path like every other source.
        return self._imgs[indices][..., None] * np.uint8(255)
