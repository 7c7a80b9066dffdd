"""The interfaces every data set with known generating factors speaks.

`FactorData`: images with known factor values, sampled as random (factors, images) pairs, with a
torch view for training. `GroundTruthData`, a full factor grid, adds disentanglement_lib's shape
(`sample_factors`, `sample_observations_from_factors`) and index <-> factor conversion, so every
metric of `concept_diffusion.evaluation` works on it; the pair metrics (DCI, MIG, SAP,
modularity) work on any `FactorData`.
"""

from abc import ABC, abstractmethod

import numpy as np


class ImageShape:
    """`image_size` and `num_channels` of anything with an `observation_shape` (H, W, C)."""

    observation_shape: tuple[int, int, int]

    @property
    def image_size(self) -> int:
        return self.observation_shape[0]

    @property
    def num_channels(self) -> int:
        return self.observation_shape[2]


class FactorData(ImageShape, ABC):
    """Images with known factor values: what every source shares.

    Random (factors, images) pairs from `sample`, images by index, and the torch view for
    training. Subclasses set `factor_names`, `observation_shape` (H, W, C), `citation`,
    `license` and `provenance` (what a dataset card says), and implement `__len__`,
    `index_to_factors` and `_images_at(indices)`, which returns the images at `indices` as uint8
    (0..255) or float (0..1) arrays of shape (n, H, W, C).

    `has_factor_grid` says whether every combination of factor values has an image
    (`GroundTruthData`); only then can images be drawn for chosen factors, which FactorVAE and
    BetaVAE need. DCI, MIG, SAP and modularity need only `sample`.
    """

    factor_names: list[str]
    factor_values: list[list[str]] | None = None     # names of each factor's values, where known
    observation_shape: tuple[int, int, int]
    has_factor_grid: bool = False
    citation: str = "(see the original data set)"
    license: str = "other"
    provenance: str = "converted with concept-diffusion"

    @abstractmethod
    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        """Images at `indices` (int64, any order, repeats allowed): uint8 or float in [0, 1]."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abstractmethod
    def index_to_factors(self, indices) -> np.ndarray:
        """Factor values (num, K) of the images at `indices` (num,)."""

    @abstractmethod
    def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """`num` random (factors, observations) pairs; observations float32 (num, H, W, C) in [0, 1]."""

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        """`num` random observations, float32 (num, H, W, C) in [0, 1]."""
        return self.sample(num, random_state)[1]

    def images(self, indices) -> np.ndarray:
        """Images at `indices` as float32 (num, H, W, C) in [0, 1].

        Example:
            >>> data.images([0, 1, 2]).shape
            (3, 64, 64, 3)
        """
        images = self._images_at(self._check_indices(indices))
        if images.dtype == np.uint8:
            return images.astype(np.float32) / np.float32(255.0)
        return images.astype(np.float32, copy=False)

    def _images_uint8(self, indices: np.ndarray) -> np.ndarray:
        images = self._images_at(indices)
        if images.dtype == np.uint8:
            return images
        return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim == 0:
            indices = indices[None]
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices: expected a 1-D integer array, got shape {indices.shape} of {indices.dtype}")
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"indices: expected values in 0..{len(self) - 1}, got {indices.min()}..{indices.max()}")
        return indices

    def warm_up(self) -> None:
        """Do once, in this process, the work that every DataLoader worker would otherwise repeat
        (`dataloader` calls it before starting workers). Nothing to do for most sources."""

    # --- torch view --------------------------------------------------------------------------

    def torch_dataset(self):
        """A map-style torch `Dataset` over all images.

        `dataset[i]` is a dict {"images": float32 (C, H, W) in [-1, 1], "factors": (K,)};
        `dataset[[i, j, ...]]` renders or reads the whole batch at once and returns
        {"images": (B, C, H, W), "factors": (B, K)}: that is what `dataloader` uses.

        Example:
            >>> item = data.torch_dataset()[0]
            >>> item["images"].shape, item["factors"].shape
            (torch.Size([3, 64, 64]), torch.Size([6]))
        """
        from concept_diffusion.data.torch_view import FactorDataset

        return FactorDataset(self)

    def dataloader(self, batch_size: int, shuffle: bool = True, num_workers: int = 0, seed: int = 0,
                   drop_last: bool = True, pin_memory: bool = False):
        """A torch `DataLoader` yielding dicts {"images": float32 (B, C, H, W) in [-1, 1],
        "factors": (B, K)}.

        Each batch is produced by one call that renders or reads all B images together (a batch
        sampler), not B calls of one image. `seed` fixes the shuffling order.

        Example:
            >>> for batch in data.dataloader(batch_size=64, num_workers=2):
            ...     loss = model(batch["images"])
        """
        from concept_diffusion.data.torch_view import make_dataloader

        return make_dataloader(self, batch_size, shuffle=shuffle, num_workers=num_workers, seed=seed,
                               drop_last=drop_last, pin_memory=pin_memory)


class GroundTruthData(FactorData):
    """A data set whose images are generated by discrete, known factors over a full grid.

    Subclasses set `factor_names`, `factor_sizes`, `observation_shape` (H, W, C) and, where known,
    `factor_values` (a list of value names per factor), and implement `_images_at(indices)`.

    Images are indexed in C order over the factor grid: the index of factors (f_0, ..., f_K-1) is
    `sum_i f_i * prod(factor_sizes[i+1:])`, the order of the official Shapes3D, dSprites and MPI3D
    files.

    Example:
        >>> data = load_ground_truth("dsprites-procedural", image_size=32)
        >>> rng = np.random.RandomState(0)
        >>> factors = data.sample_factors(4, rng)                  # (4, 5) int64
        >>> images = data.sample_observations_from_factors(factors, rng)   # (4, 32, 32, 1) in [0, 1]
    """

    factor_sizes: list[int]
    has_factor_grid = True

    # --- shape of the data -------------------------------------------------------------------

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"{type(self).__name__}({factors}; {len(self)} images of {self.observation_shape})"

    # --- disentanglement_lib's interface -----------------------------------------------------

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        """Draw `num` factor tuples uniformly, exactly as disentanglement_lib does.

        For each factor in order, `random_state.randint(size, size=num)`; the same seed gives the
        same factors as disentanglement_lib's data sets, so metric values can be compared.

        Example:
            >>> data.sample_factors(2, np.random.RandomState(0))
            array([[0, 3, 5, 0, 3], ...])
        """
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factor_sizes):
            factors[:, i] = random_state.randint(size, size=num)
        return factors

    def sample_indices_from_factors(self, factors, random_state: np.random.RandomState) -> np.ndarray:
        """Indices (num,) of the images `sample_observations_from_factors` returns for `factors`.

        It draws from `random_state` exactly what that method draws (nothing where the factors fix
        the image; SmallNORB's instance), so evaluation can work with indices and encode each
        distinct image once.
        """
        return self.factors_to_index(factors)

    def sample_observations_from_factors(self, factors, random_state: np.random.RandomState) -> np.ndarray:
        """Images for factor tuples `factors` (num, K): float32 (num, H, W, C) in [0, 1].

        `random_state` draws the factors that are not part of the interface (SmallNORB's object
        instance); for data sets where the factors fix the image it is not used.
        """
        return self.images(self.sample_indices_from_factors(factors, random_state))

    def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """`num` random (factors, observations) pairs."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    # --- index <-> factors -------------------------------------------------------------------

    def factors_to_index(self, factors) -> np.ndarray:
        """Grid indices (int64, shape (num,)) of factor tuples (num, K)."""
        factors = self._check_factors(factors)
        return np.ravel_multi_index(tuple(factors.T), self.factor_sizes).astype(np.int64)

    def index_to_factors(self, indices) -> np.ndarray:
        """Factor tuples (num, K) int64 of grid indices (num,)."""
        indices = self._check_indices(indices)
        return np.stack(np.unravel_index(indices, self.factor_sizes), axis=1).astype(np.int64)

    def _check_factors(self, factors) -> np.ndarray:
        factors = np.asarray(factors)
        if factors.ndim == 1 and factors.shape[0] == self.num_factors:
            factors = factors[None]
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(
                f"factors: expected an integer array of shape (num, {self.num_factors}) for the factors "
                f"{self.factor_names}, got shape {factors.shape}"
            )
        if not np.issubdtype(factors.dtype, np.integer):
            raise ValueError(f"factors: expected integers (value indices), got dtype {factors.dtype}")
        factors = factors.astype(np.int64, copy=False)
        sizes = np.asarray(self.factor_sizes)
        bad = (factors < 0) | (factors >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"factors: {self.factor_names[col]} = {factors[row, col]} is out of range; expected "
                f"0..{sizes[col] - 1} (factor_sizes {self.factor_sizes})"
            )
        return factors


def grid_codes(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map the label columns of a file to value indices: (codes (N, K) int64, sorted values per factor).

    Official files store one label row per image; the distinct values of each column are that
    factor's grid.
    """
    values = [np.unique(labels[:, i]) for i in range(labels.shape[1])]
    codes = np.stack([np.searchsorted(v, labels[:, i]) for i, v in enumerate(values)], axis=1)
    return codes.astype(np.int64), values


def check_c_order_grid(codes: np.ndarray, sizes: list[int], source: str, names: list[str]) -> None:
    """Raise unless row i of `codes` is the i-th factor tuple of the C-order grid over `sizes`."""
    expected = int(np.prod(sizes))
    if codes.shape[0] != expected:
        raise ValueError(
            f"{source}: labels do not form the expected factor grid: {codes.shape[0]} rows, but the "
            f"distinct values ({', '.join(f'{n} {s}' for n, s in zip(names, sizes))}) make {expected} "
            f"combinations; the file is truncated or not an official copy"
        )
    flat = np.ravel_multi_index(tuple(codes.T), sizes)
    wrong = np.flatnonzero(flat != np.arange(expected))
    if wrong.size:
        row = int(wrong[0])
        raise ValueError(
            f"{source}: labels do not form the expected factor grid in C order: row {row} has factor "
            f"indices {codes[row].tolist()}, expected {[int(i) for i in np.unravel_index(row, sizes)]}; the images "
            f"must be ordered by ({', '.join(names)}) with the last factor changing fastest"
        )
