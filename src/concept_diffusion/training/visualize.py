"""Pictures of a run: per-concept swap grids and loss/metric curves."""

import json
import math

import numpy as np
import PIL.Image
import torch
from diffusers.utils import make_image_grid

from concept_diffusion.atomic import atomic_path


def concept_swap_grid(pipe, sources: np.ndarray, references: np.ndarray, num_inference_steps: int = 20, seed: int = 0):
    """One row per source image: the source, its reference, then the source with concept k copied
    from the reference, for every concept k. Each row starts from one noise, so the columns differ
    only by the swapped concept: a disentangled concept changes one factor.

    `sources` and `references` are batches of the same length that `pipe.swap` takes, e.g. numpy
    arrays (B, H, W, C) in [0, 1].

    Example:
        >>> concept_swap_grid(pipe, images[:4], images[4:8]).save("swap.png")
    """
    num_concepts = pipe.concept_encoder.config.num_concepts
    columns = []
    for concept in range(num_concepts):
        # The same seed for every concept: each row keeps its noise across the columns.
        swapped = pipe.swap(sources, references, concept_indices=[concept], pairwise=True, num_inference_steps=num_inference_steps,
                            generator=torch.Generator().manual_seed(seed), output_type="pil")
        columns.append([row[0] for row in swapped.images])
    originals = [pipe.image_processor.numpy_to_pil(np.asarray(batch, dtype=np.float32)) for batch in (sources, references)]
    tiles = []
    for row in range(len(columns[0])):
        tiles += [originals[0][row], originals[1][row]] + [column[row] for column in columns]
    labels = ["source", "reference"] + [f"concept {k}" for k in range(num_concepts)]
    return labelled_grid(tiles, rows=len(columns[0]), labels=labels)


def labelled_grid(tiles: list, rows: int, labels: list, min_tile: int = 96) -> PIL.Image.Image:
    """Tiles in `rows` rows under a header naming each column; small tiles are enlarged (pixel for
    pixel) to at least `min_tile` so that the picture can be read."""
    from PIL import ImageDraw, ImageFont

    width, height = tiles[0].size
    scale = max(1, -(-min_tile // width))
    tiles = [tile.convert("RGB").resize((width * scale, height * scale), PIL.Image.NEAREST) for tile in tiles]
    grid = make_image_grid(tiles, rows=rows, cols=len(labels))
    font = ImageFont.load_default(size=max(10, width * scale // 8))
    header = max(14, width * scale // 5)
    picture = PIL.Image.new("RGB", (grid.width, grid.height + header), "white")
    picture.paste(grid, (0, header))
    draw = ImageDraw.Draw(picture)
    for column, label in enumerate(labels):
        draw.text(((column + 0.5) * width * scale, header / 2), label, fill="black", font=font, anchor="mm")
    return picture


def plot_curves(log_path: str, png_path: str) -> None:
    """Plot the loss and every metric of a JSONL training log against images seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    skip = {"step", "images_seen", "seconds", "lr", "final"}
    keys = sorted({key for record in records for key in record if key not in skip and isinstance(record[key], (int, float))},
                  key=lambda key: (key != "loss", key))
    if not keys:
        return
    cols = min(3, len(keys))
    figure, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(4.5 * cols, 3.2 * math.ceil(len(keys) / cols)), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        points = [(r["images_seen"], r[key]) for r in records if key in r]
        axis.plot(*zip(*points), marker="." if key != "loss" else None)
        axis.set_title(key)
        axis.set_xlabel("images seen")
        if key == "loss":
            axis.set_yscale("log")
    for axis in list(axes.flat)[len(keys):]:
        axis.axis("off")
    figure.tight_layout()
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
