"""`datasets` integration: any source as a `datasets.Dataset`, any such data set as a source."""

import io
import uuid

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData

IMAGE_COLUMN = "image"
LAYOUT = (f"an {IMAGE_COLUMN!r} column (Image feature) and one ClassLabel (or numeric) column per factor, "
          "as concept_diffusion.data.to_hf_dataset writes")


class NotAFactorGrid(ValueError):
    """The labels are not value indices covering every combination of factor values."""


def factor_columns(dataset, factor_names, image_column: str, source: str) -> list[str]:
    """The factor columns of `dataset`: `factor_names` if given, else every `ClassLabel` column,
    else every numeric column; checked to exist and be numeric."""
    import datasets

    columns = dataset.features
    if image_column not in columns:
        raise ValueError(f"{source}: no {image_column!r} column (columns: {list(columns)}); expected {LAYOUT}")

    def numeric(feature):
        return isinstance(feature, datasets.ClassLabel) or (
            isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint", "float", "bool")))

    if factor_names is None:
        factor_names = [n for n, f in columns.items() if isinstance(f, datasets.ClassLabel)]
        if not factor_names:
            factor_names = [n for n, f in columns.items() if n != image_column and numeric(f)]
    missing = [n for n in factor_names if n not in columns]
    if missing or not factor_names:
        raise ValueError(
            f"{source}: factor columns {missing or 'none'} not found (columns: {list(columns)}); expected "
            f"{LAYOUT}; pass factor_names=[...] to name the factor columns"
        )
    wrong = [f"{n} ({columns[n]})" for n in factor_names if not numeric(columns[n])]
    if wrong:
        raise ValueError(f"{source}: factor columns {wrong} are not numeric; expected numbers (integers, floats) or ClassLabel columns")
    return list(factor_names)


def decode_images(encoded) -> np.ndarray:
    """Undecoded `datasets.Image` cells ({"bytes", "path"}) -> uint8 (n, H, W, C); grayscale as C = 1."""
    from PIL import Image

    images = []
    for item in encoded:
        image = Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"])
        array = np.asarray(image.convert("L" if image.mode in ("L", "1", "I;16") else "RGB"))
        images.append(array[..., None] if array.ndim == 2 else array)
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes {shapes[:4]}: a data set needs one size; resize them first (e.g. PIL's Image.resize)")
    return np.stack(images)


def to_hf_dataset(data: GroundTruthData, indices=None, batch_size: int = 1024):
    """Convert a ground-truth source into a `datasets.Dataset`.

    Columns: `image` (Image feature, PNG encoded; grayscale sources as mode "L") and one
    `ClassLabel` column per factor, in factor order, named after the factor, with the value names
    where the source knows them. Rows are in index order (`indices`, default: every image).

    Example:
        >>> ds = to_hf_dataset(load_ground_truth("dsprites-procedural", image_size=32), indices=range(100))
        >>> ds.features["shape"].names
        ['square', 'ellipse', 'heart']
        >>> ds.save_to_disk("dsprites-sample")   # or push_ground_truth_to_hub(ds, "user/dsprites-sample")
    """
    import datasets
    from tqdm.auto import tqdm

    if not isinstance(data, GroundTruthData):
        raise ValueError(f"data: expected a GroundTruthData (e.g. load_ground_truth('shapes3d-procedural')), got {type(data).__name__}")
    indices = np.arange(len(data), dtype=np.int64) if indices is None else data._check_indices(np.asarray(list(indices) if isinstance(indices, range) else indices))
    features = {IMAGE_COLUMN: datasets.Image()}
    for i, (name, size) in enumerate(zip(data.factor_names, data.factor_sizes)):
        names = data.factor_values[i] if data.factor_values is not None else None
        features[name] = datasets.ClassLabel(names=list(names)) if names else datasets.ClassLabel(num_classes=size)
    features = datasets.Features(features)

    def rows(chunks):
        for chunk in chunks:
            images = data._images_uint8(chunk)
            factors = data.index_to_factors(chunk)
            if images.shape[-1] == 1:
                images = images[..., 0]
            for image, row in zip(images, factors):
                yield {IMAGE_COLUMN: image, **{name: int(v) for name, v in zip(data.factor_names, row)}}

    chunks = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    progress = tqdm(chunks, desc="converting to datasets", unit="batch", disable=len(chunks) < 4)
    # A fresh fingerprint: hashing the generator would pickle the whole source (arrays included).
    return datasets.Dataset.from_generator(rows, features=features, gen_kwargs={"chunks": progress},
                                           fingerprint=uuid.uuid4().hex)


class HFGroundTruthData(GroundTruthData):
    """A `datasets.Dataset` with an image column and one integer column per factor, as a source.

    Factor columns are, in order: `factor_names` if given, else every `ClassLabel` column, else
    every numeric column. They must hold value indices 0..n-1, and every factor combination must
    occur at least once (else `NotAFactorGrid`: open such data as `LabelledImages`); where one occurs
    several times (e.g. SmallNORB's instances), `sample_indices_from_factors` picks one with
    `random_state` and indices run over all rows grouped by factors.

    Example:
        >>> data = HFGroundTruthData(datasets.load_from_disk("shapes3d-64"))
    """

    def __init__(self, dataset, factor_names=None, image_column: str = IMAGE_COLUMN, source: str = "dataset"):
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"{source}: expected a datasets.Dataset, got {type(dataset).__name__}")
        columns = dataset.features
        factor_names = factor_columns(dataset, factor_names, image_column, source)
        continuous = [n for n in factor_names if isinstance(columns[n], datasets.Value) and columns[n].dtype.startswith("float")]
        if continuous:
            raise NotAFactorGrid(f"{source}: factor columns {continuous} hold continuous values, not value indices of a grid")
        self.factor_names = list(factor_names)
        codes = np.stack([np.asarray(dataset.with_format("numpy")[n], dtype=np.int64) for n in self.factor_names], axis=1)
        sizes, values = [], []
        for i, name in enumerate(self.factor_names):
            feature = columns[name]
            size = feature.num_classes if isinstance(feature, datasets.ClassLabel) else int(codes[:, i].max()) + 1
            if codes[:, i].min() < 0 or codes[:, i].max() >= size:
                raise NotAFactorGrid(f"{source}: column {name!r} has values outside 0..{size - 1}; expected {LAYOUT}")
            sizes.append(size)
            values.append(list(feature.names) if isinstance(feature, datasets.ClassLabel) else None)
        self.factor_sizes = sizes
        self.factor_values = values if all(v is not None for v in values) else None

        flat = np.ravel_multi_index(tuple(codes.T), sizes)
        counts = np.bincount(flat, minlength=int(np.prod(sizes)))
        if counts.min() == 0:
            absent = int(np.argmin(counts))
            raise NotAFactorGrid(
                f"{source}: labels do not form the expected factor grid: factors "
                f"{[int(i) for i in np.unravel_index(absent, sizes)]} ({', '.join(self.factor_names)}) have no image, "
                f"{int((counts == 0).sum())} of {len(counts)} combinations are missing; every combination needs an image"
            )
        self._rows = np.argsort(flat, kind="stable")         # index -> row, grouped by factor tuple
        self._first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts
        self._flat = flat[self._rows]
        self._dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self._image_column = image_column
        first = decode_images([self._dataset[int(self._rows[0])][image_column]])
        self.observation_shape = first.shape[1:]

    def __len__(self) -> int:
        return len(self._rows)

    def index_to_factors(self, indices) -> np.ndarray:
        flat = self._flat[self._check_indices(indices)]
        return np.stack(np.unravel_index(flat, self.factor_sizes), axis=1).astype(np.int64)

    def factors_to_index(self, factors) -> np.ndarray:
        """Index of the first image with each factor tuple."""
        return self._first[super().factors_to_index(factors)]

    def sample_indices_from_factors(self, factors, random_state: np.random.RandomState) -> np.ndarray:
        flat = super().factors_to_index(factors)
        counts = self._counts[flat]
        offsets = random_state.randint(counts) if counts.max() > 1 else 0
        return self._first[flat] + offsets

    def _images_at(self, indices: np.ndarray) -> np.ndarray:
        rows = self._rows[indices]
        return decode_images(self._dataset[rows.tolist()][self._image_column])
