"""What the trainers read: batches of images in [-1, 1], in an order fixed by (seed, step).

The order of every batch is a function of the seed and the batch's number alone, so a run resumed
at step k sees exactly the batches an uninterrupted run would, with any number of workers, and
each of several processes takes its own slice of every global batch.
"""

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from concept_diffusion.data.ground_truth import ImageShape
from concept_diffusion.data.threads import one_thread_per_worker

# Metrics that fix one factor and draw the others, so need an image for every combination.
GRID_METRICS = ("factor_vae", "beta_vae")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageOnlyData(ImageShape, Dataset):
    """A `datasets.Dataset` with an image column and no factor columns: trainable, not scorable.

    With `image_size`, each image is centre-cropped to a square and resized to it (bicubic), and with
    `channels` converted to RGB (3) or greyscale (1), so that a folder of photos of any size trains.
    """

    def __init__(self, dataset, source: str, image_column: str = "image", image_size=None, channels=None):
        if image_column not in dataset.column_names:
            raise ValueError(f"{source}: no {image_column!r} column (columns: {dataset.column_names}); expected images in an 'image' column")
        self.image_column, self.resize_to, self.channels = image_column, image_size, channels
        self.dataset = dataset.with_format("numpy", columns=[image_column]) if image_size is None else dataset.select_columns([image_column])
        first = self._arrays([0])[0]
        self.observation_shape = first.shape if first.ndim == 3 else (*first.shape, 1)

    def __len__(self) -> int:
        return len(self.dataset)

    def _arrays(self, indices) -> list:
        images = self.dataset[list(indices)][self.image_column]
        if self.resize_to is None:
            return [np.asarray(image) for image in images]
        return [square_resize(image, self.resize_to, self.channels) for image in images]

    def __getitem__(self, indices):
        images = np.stack(self._arrays(indices))
        if images.ndim == 3:
            images = images[..., None]
        tensor = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
        if images.dtype == np.uint8:
            tensor = tensor / 127.5 - 1
        else:
            tensor = tensor * 2 - 1
        return {"images": tensor}


def square_resize(image, size: int, channels=None) -> np.ndarray:
    """A PIL image centre-cropped to a square, resized to `size` (bicubic), as uint8 (H, W) or (H, W, C);
    `channels` 3 converts to RGB, 1 to greyscale."""
    import PIL.Image

    if channels is not None:
        image = image.convert("RGB" if channels == 3 else "L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return np.asarray(image.resize((size, size), PIL.Image.Resampling.BICUBIC) if side != size else image)


def is_plain_image_folder(source: str) -> bool:
    """A folder of image files with no labels and no `datasets` files (datasets' "imagefolder" without metadata)."""
    if not os.path.isdir(source):
        return False
    markers = ("metadata.csv", "metadata.jsonl", "dataset_info.json", "dataset_dict.json", "state.json")
    if any(os.path.exists(os.path.join(source, marker)) for marker in markers):
        return False
    return any(name.lower().endswith(IMAGE_SUFFIXES) for _, _, names in os.walk(source) for name in names)


def load_training_data(source: str, image_size: int, channels=None):
    """Return `(torch_dataset, ground_truth_or_None)` for `source` at `image_size`.

    Data with factors (anything `load_ground_truth` opens: a factor grid, or labelled images
    without one, such as a folder of images with a metadata.csv) is scored during training (on
    labelled images without a grid, with the pair metrics dci, mig, sap and modularity only); a
    `datasets` folder or Hub data set with images only is trained on without metrics, and so is a
    folder of image files without labels, each centre-cropped and resized to `image_size` (and
    converted to `channels`, 3 or 1).
    """
    from concept_diffusion.data import load_ground_truth

    if is_plain_image_folder(source):
        import datasets

        folder = datasets.load_dataset("imagefolder", data_dir=source, split="train")
        return ImageOnlyData(folder, source, image_size=image_size, channels=channels), None
    try:
        data = load_ground_truth(source, image_size=image_size)
    except ValueError as error:
        if "factor columns" not in str(error):
            raise
        import datasets

        dataset = datasets.load_from_disk(source) if os.path.isdir(source) else datasets.load_dataset(source, split="train")
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset["train"]
        return ImageOnlyData(dataset, source), None
    return data.torch_dataset(), data


def parse_held_out(spec: str, data) -> dict:
    """The block of factor combinations `spec` names, as {factor index: sorted value indices}.

    `spec` is `FACTOR=VALUES[;FACTOR=VALUES...]`, each VALUES a comma-separated list of value names (as the data
    names them, e.g. `sphere`) or value indices: `"shape=sphere;floor_hue=0,1,9"` is every sphere on floor hues 0, 1
    and 9. An image is in the block when each named factor takes one of its listed values.
    """
    names = getattr(data, "factor_names", None)
    if names is None or not getattr(data, "has_factor_grid", False):
        raise ValueError(f"held_out={spec!r} needs data with a factor grid (a ground-truth data set such as "
                         "shapes3d-procedural); this data has none: drop held_out")
    block = {}
    for part in filter(None, (part.strip() for part in spec.split(";"))):
        factor, _, values = part.partition("=")
        factor = factor.strip()
        if factor not in names or not values.strip():
            raise ValueError(f"held_out={spec!r}: {part!r} must be FACTOR=VALUE[,VALUE...] with FACTOR one of {names}")
        index = names.index(factor)
        known = list(data.factor_values[index]) if data.factor_values else []
        block[index] = sorted({_value_index(value.strip(), known, data.factor_sizes[index], factor, spec)
                               for value in values.split(",") if value.strip()})
    if not block:
        raise ValueError(f"held_out={spec!r} names no factor: write e.g. 'shape=sphere;floor_hue=0,1,9'")
    return block


def _value_index(value: str, known: list, size: int, factor: str, spec: str) -> int:
    if value in known:
        return known.index(value)
    if value.isdigit() and int(value) < size:
        return int(value)
    raise ValueError(f"held_out={spec!r}: {factor} has no value {value!r}; use a value index 0..{size - 1}"
                     + (f" or a name from {known}" if known else ""))


def in_block(factors: np.ndarray, block: dict) -> np.ndarray:
    """Which rows of `factors` (num, K) lie in the block of combinations `block` (`parse_held_out`)."""
    inside = np.ones(len(factors), dtype=bool)
    for factor, values in block.items():
        inside &= np.isin(factors[:, factor], values)
    return inside


class HeldOutSubset(Subset):
    """The images of a ground-truth data set outside a block of factor combinations (`held_out`), as a map-style
    dataset that still serves whole batches and exposes the data (`.data`) as the full one does."""

    @property
    def data(self):
        return self.dataset.data


def without_combinations(dataset, data, spec: str) -> HeldOutSubset:
    """`dataset` (the torch view of the grid `data`) less every image in the block `spec` names (`parse_held_out`)."""
    block = parse_held_out(spec, data)
    inside = in_block(data.index_to_factors(np.arange(len(data))), block)
    if inside.all():
        raise ValueError(f"held_out={spec!r} holds out every image of the data: name a smaller block")
    return HeldOutSubset(dataset, np.flatnonzero(~inside).tolist())


def scorable_metrics(data, metrics) -> list:
    """The metrics among `metrics` that can score `data` during training.

    Labelled images without a full factor grid cannot give FactorVAE and BetaVAE (they fix one
    factor and need the grid): those are left out, so that a run with the default metrics trains
    and scores with the rest instead of failing at its first evaluation (the trainer says so once).
    """
    if data is None or getattr(data, "has_factor_grid", True):
        return list(metrics)
    return [m for m in metrics if m not in GRID_METRICS]


def check_image_size(data, sample_size: int, in_channels: int, source: str, preset: str) -> None:
    if data.image_size != sample_size or data.num_channels != in_channels:
        raise ValueError(
            f"{source} has {data.image_size}x{data.image_size} images with {data.num_channels} channels, but the preset "
            f"{preset!r} expects {sample_size}x{sample_size} with {in_channels}: choose a preset for this size, or "
            f"a source at {sample_size}x{sample_size} (procedural sources render any size)"
        )


class StepBatchSampler(Sampler):
    """Index batches for batch numbers `start`, `start + 1`, ...: epoch e visits a permutation seeded by
    (seed, e), and process r takes the r-th slice of each global batch."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start: int = 0, num_processes: int = 1, process_index: int = 0):
        global_batch = batch_size * num_processes
        if num_items < global_batch:
            raise ValueError(f"the data has {num_items} images, fewer than one global batch ({global_batch}): lower batch_size")
        self.num_items, self.batch_size, self.seed, self.start = num_items, batch_size, seed, start
        self.num_processes, self.process_index = num_processes, process_index
        self.batches_per_epoch = num_items // global_batch

    def __len__(self):
        return 2**62  # endless: the trainer stops on steps or time

    def __iter__(self):
        number = self.start
        epoch, order = -1, None
        while True:
            batch_epoch, position = divmod(number, self.batches_per_epoch)
            if batch_epoch != epoch:
                epoch, order = batch_epoch, np.random.default_rng([self.seed, batch_epoch]).permutation(self.num_items)
            first = (position * self.num_processes + self.process_index) * self.batch_size
            yield order[first : first + self.batch_size].tolist()
            number += 1


def batch_loader(dataset, batch_size: int, seed: int, start: int = 0, num_workers: int = 0, num_processes: int = 1, process_index: int = 0):
    """An endless DataLoader of `{"images": (B, C, H, W) in [-1, 1], ...}` starting at batch number `start`.

    With a GPU the batches come in pinned memory, so that copying them to the device does not wait for it.
    With workers, the data's one-time preparation (`GroundTruthData.warm_up`) runs before they start, and
    each worker uses one BLAS and one torch thread (`one_thread_per_worker`).
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start, num_processes, process_index)
    if num_workers > 0 and hasattr(getattr(dataset, "data", None), "warm_up"):
        dataset.data.warm_up()  # e.g. the procedural geometry: once here, not once per worker while the model waits
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers, persistent_workers=False,
                      pin_memory=torch.cuda.is_available(), worker_init_fn=one_thread_per_worker)


def step_generator(seed: int, number: int, process_index: int = 0, device="cpu") -> torch.Generator:
    """A generator on `device` for the noise and timesteps of batch `number`: resuming needs no RNG state.

    Drawing on the device the model is on keeps the training step free of host-to-device copies,
    each of which would make the host wait for the device.
    """
    state = np.random.SeedSequence([seed, number, process_index]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(state))
