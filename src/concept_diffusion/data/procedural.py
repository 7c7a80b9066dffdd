"""What the procedural generators share: rendering in batches and the optional memmap cache."""

import os
from abc import abstractmethod
from pathlib import Path

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData

MIN_IMAGE_SIZE = 8


class ProceduralData(GroundTruthData):
    """A generator that renders any factor tuple on demand, deterministically, at any size.

    With `cache_dir`, the whole grid is rendered once into `{cache_dir}/{name}-{size}px.npy`
    (uint8, read back as a numpy memmap), which pays off when the same images are read many times.
    """

    name: str
    num_channels_rendered: int

    def __init__(self, image_size: int = 64, cache_dir=None):
        if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size: expected an integer of at least {MIN_IMAGE_SIZE} (e.g. 32, 64, 128), got {image_size!r}"
            )
        self.observation_shape = (int(image_size), int(image_size), self.num_channels_rendered)
        self._cache_path = None
        self._cache = None
        if cache_dir is not None:
            self._cache_path = Path(cache_dir) / f"{self.name}-{image_size}px.npy"
            if not self._cache_path.exists():
                self._write_cache(self._cache_path)

    @abstractmethod
    def render(self, factors: np.ndarray) -> np.ndarray:
        """Render factor tuples (num, K), already checked, as float32 (num, H, W, C) in [0, 1]."""

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        if self._cache_path is not None:
            if self._cache is None:
                self._cache = np.load(self._cache_path, mmap_mode="r")
            return self._cache[np.sort(indices)][np.argsort(np.argsort(indices))]
        return self.render(self.index_to_factors(indices))

    def __getstate__(self):
        # A memmap would be pickled as a full copy of the grid; DataLoader workers reopen it.
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def _write_cache(self, path: Path, chunk: int = 4096) -> None:
        from tqdm.auto import tqdm

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        grid = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(self), *self.observation_shape))
        for start in tqdm(range(0, len(self), chunk), desc=f"rendering {self.name} cache", unit="batch"):
            indices = np.arange(start, min(start + chunk, len(self)), dtype=np.int64)
            grid[start : start + len(indices)] = np.rint(self.render(self.index_to_factors(indices)) * 255.0)
        grid.flush()
        del grid
        os.replace(tmp, path)
