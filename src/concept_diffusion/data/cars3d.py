"""Cars3D (Reed et al. 2015): the folder of `car_XXX_mesh.mat` files."""

from pathlib import Path

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData

EXPECTED = "a folder of Cars3D files car_XXX_mesh.mat (183 in the official set), each with 'im' (128, 128, 3, 24, 4) uint8"


class Cars3D(GroundTruthData):
    """Cars3D: elevation 4 x azimuth 24 x car 183 = 17,568 images, resized to `image_size`.

    Every image appears once (disentanglement_lib's protocol evaluates on exactly these unique
    images). Each file's `im` holds (H, W, RGB, azimuth, elevation); cars are numbered in the
    sorted order of the file names. All images are resized once when the data set is opened
    (about 216 MB as uint8 at 64x64).

    Example:
        >>> data = Cars3D("data/cars")
        >>> data.factor_sizes
        [4, 24, 183]
    """

    provenance = "Cars3D from 'Deep Visual Analogy-Making' (http://www.scottreed.info/), resized and converted by concept-diffusion."
    license = 'other'
    citation = '@inproceedings{reed2015deep,\n  title={Deep Visual Analogy-Making},\n  author={Reed, Scott E and Zhang, Yi and Zhang, Yuting and Lee, Honglak},\n  booktitle={NeurIPS},\n  year={2015}\n}'

    factor_names = ["elevation", "azimuth", "object"]

    def __init__(self, folder, image_size: int = 64):
        from PIL import Image
        from scipy.io import loadmat
        from tqdm.auto import tqdm

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; expected {EXPECTED}")
        files = sorted(folder.glob("car_*_mesh.mat"))
        if not files:
            raise FileNotFoundError(f"{folder}: no car_*_mesh.mat files; expected {EXPECTED}")
        self.factor_sizes = [4, 24, len(files)]
        self.observation_shape = (image_size, image_size, 3)
        self.factor_values = [[str(i) for i in range(4)], [f"{15 * i}deg" for i in range(24)], [f.stem[:-5] for f in files]]
        images = np.empty((4, 24, len(files), image_size, image_size, 3), dtype=np.uint8)
        for car, file in enumerate(tqdm(files, desc="reading Cars3D", unit="car", disable=len(files) < 20)):
            try:
                mesh = loadmat(file)["im"]
            except (KeyError, ValueError, OSError, TypeError) as error:
                raise ValueError(f"{file}: not readable as a Cars3D .mat ({type(error).__name__}: {error}); expected {EXPECTED}") from None
            if mesh.ndim != 5 or mesh.shape[2:] != (3, 24, 4) or mesh.dtype != np.uint8:
                raise ValueError(f"{file}: 'im' has shape {mesh.shape} and dtype {mesh.dtype}; expected {EXPECTED}")
            for azimuth in range(24):
                for elevation in range(4):
                    picture = Image.fromarray(np.ascontiguousarray(mesh[:, :, :, azimuth, elevation]))
                    images[elevation, azimuth, car] = np.asarray(picture.resize((image_size, image_size), Image.LANCZOS))
        self._images = images.reshape(-1, image_size, image_size, 3)

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]
