"""Labelled images without a full factor grid: a subset, a user's own images, CelebA-style attributes.

DCI, MIG, SAP and modularity need only random (image, factors) pairs, which any labelled data
set gives; FactorVAE and BetaVAE fix one factor and draw the others, which needs an image for
every combination (a `GroundTruthData`), so they refuse this data.
"""

import numpy as np

from concept_diffusion.data.ground_truth import FactorData
from concept_diffusion.data.hf_datasets import IMAGE_COLUMN, decode_images, factor_columns

# Bins of a continuous factor: disentanglement_lib's `histogram_discretizer` default.
NUM_BINS = 20


def histogram_bins(values, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin numbers 1..num_bins of `values` (n,) in `num_bins` equal-width bins over their range.

    disentanglement_lib's `histogram_discretizer` for one column: `np.digitize` on the left edges
    of `np.histogram`'s bins (the maximum falls in the last bin).

    Example:
        >>> histogram_bins(np.array([0.0, 0.5, 1.0]), num_bins=2)
        array([1, 2, 2])
    """
    values = np.asarray(values)
    return np.digitize(values, np.histogram(values, num_bins)[1][:-1])


class LabelledImages(FactorData):
    """A `datasets.Dataset` of images with one numeric column per factor, not necessarily a grid.

    Factor columns are `factor_names` if given, else every `ClassLabel` column, else every numeric
    column (an image folder's `metadata.csv`: every column after `file_name`). The metrics treat
    factors as classes, so each column becomes value indices 0..n-1 (`index_to_factors`):

    - ClassLabel columns: their label indices;
    - integer columns, and float columns with at most 20 distinct values: the index of each value
      among the column's sorted distinct values;
    - float columns with more than 20 distinct values (continuous factors): 20 equal-width bins
      over the column's range, disentanglement_lib's `histogram_discretizer` (the binning MIG and
      modularity apply to codes), numbered 0..19. The names of these factors are in
      `continuous_factors`, the raw values in `labels`.

    `sample(num, random_state)` draws `random_state.randint(len(data), size=num)` rows; images for
    chosen factor values (`sample_observations_from_factors`) do not exist here and raise.

    Example:
        >>> data = load_ground_truth("my_images/")          # images + metadata.csv
        >>> factors, images = data.sample(16, np.random.RandomState(0))
    """

    def __init__(self, dataset, factor_names=None, image_column: str = IMAGE_COLUMN, source: str = "dataset"):
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"{source}: expected a datasets.Dataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError(f"{source}: no images; expected at least one labelled image")
        self.factor_names = factor_columns(dataset, factor_names, image_column, source)
        self.source = source
        table = dataset.with_format("numpy")
        self.labels = np.stack([np.asarray(table[name], dtype=np.float64) for name in self.factor_names], axis=1)
        if not np.all(np.isfinite(self.labels)):
            bad = self.factor_names[int(np.argwhere(~np.isfinite(self.labels))[0, 1])]
            raise ValueError(f"{source}: column {bad!r} has missing, NaN or infinite values; expected a number for every image")
        features = dataset.features
        continuous = [
            isinstance(features[name], datasets.Value) and features[name].dtype.startswith("float")
            and len(np.unique(self.labels[:, i])) > NUM_BINS
            for i, name in enumerate(self.factor_names)
        ]
        self.continuous_factors = [name for name, c in zip(self.factor_names, continuous) if c]
        self._factors = np.stack([self._value_indices(column, features[name], c) for column, name, c
                                  in zip(self.labels.T, self.factor_names, continuous)], axis=1)
        self.factor_sizes = [
            features[name].num_classes if isinstance(features[name], datasets.ClassLabel) else int(column.max()) + 1
            for name, column in zip(self.factor_names, self._factors.T)
        ]
        if all(isinstance(features[name], datasets.ClassLabel) for name in self.factor_names):
            self.factor_values = [list(features[name].names) for name in self.factor_names]
        self._dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self._image_column = image_column
        self.observation_shape = decode_images([self._dataset[0][image_column]]).shape[1:]

    def __len__(self) -> int:
        return len(self._factors)

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"LabelledImages({self.source}: {factors}; {len(self)} images of {self.observation_shape}, not a full grid)"

    def index_to_factors(self, indices) -> np.ndarray:
        return self._factors[self._check_indices(indices)]

    def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """`num` random (factors, observations) pairs, rows drawn uniformly with replacement."""
        indices = random_state.randint(len(self), size=num)
        return self._factors[indices], self.images(indices)

    def sample_factors(self, num, random_state):
        raise ValueError(self._no_grid("sample_factors"))

    def sample_observations_from_factors(self, factors, random_state):
        raise ValueError(self._no_grid("sample_observations_from_factors"))

    @staticmethod
    def _value_indices(column, feature, continuous) -> np.ndarray:
        import datasets

        if continuous:
            return histogram_bins(column) - 1
        if isinstance(feature, datasets.ClassLabel):
            return column.astype(np.int64)          # already indices into the label names
        return np.unique(column, return_inverse=True)[1].reshape(-1).astype(np.int64)

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        return decode_images(self._dataset[indices.tolist()][self._image_column])

    def _no_grid(self, method: str) -> str:
        return (
            f"{method}: {self!r} has no image for every combination of factor values, so images cannot be drawn "
            "for chosen factors (FactorVAE and BetaVAE need that); use sample(num, random_state) for random "
            "(factors, image) pairs, which DCI, MIG, SAP and modularity use."
        )
