"""Pictures of a run: labelled swap and traversal grids, and loss/metric curves.

`pipe.swap` and `pipe.traverse` return bare grids (the pipeline module stays free of drawing code,
because it is copied into Hub repos); the pictures a person looks at go through `labelled_grid`:
tiles enlarged for reading, rows and columns named with the concept and the factor it carries.
"""

import json
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

from concept_diffusion.atomic import atomic_path

TILE_GAP = 4  # pixels between tiles


def concept_swap_grid(pipe, sources: np.ndarray, references: np.ndarray, num_inference_steps: int = 20, seed: int = 0,
                      factor_labels: Optional[List[str]] = None) -> PIL.Image.Image:
    """One row per source image: the source, its reference, then the source with concept k copied
    from the reference, for every concept k. Each row starts from one noise, so the columns differ
    only by the swapped concept: a disentangled concept changes one factor.

    `sources` and `references` are batches of the same length that `pipe.swap` takes, e.g. numpy
    arrays (B, H, W, C) in [0, 1]. `factor_labels` (one per concept, e.g. from
    `concept_diffusion.evaluation.concept_factors.concept_labels`) name the factor under each column.

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
    rows = len(columns[0])
    tiles = []
    for row in range(rows):
        tiles += [originals[0][row], originals[1][row]] + [column[row] for column in columns]
    return labelled_grid(tiles, rows=rows, cols=num_concepts + 2, row_labels=[f"image {i}" for i in range(rows)],
                         col_labels=["image", "reference"] + concept_names(num_concepts, factor_labels),
                         title="swap: concept k of the reference copied into the image")


def concept_traversal_grid(pipe, image: np.ndarray, sweeps: torch.Tensor, num_inference_steps: int = 20, seed: int = 0,
                           factor_labels: Optional[List[str]] = None) -> PIL.Image.Image:
    """One row per concept: `image` with that concept swept through its row of `sweeps` (N, V), the others fixed.

    Every tile starts from the same noise, so a row changes only what its concept carries.

    Example:
        >>> sweeps = torch.stack([torch.linspace(lo, hi, 8) for lo, hi in concept_ranges(pipe, data).tolist()])
        >>> concept_traversal_grid(pipe, images[:1], sweeps).save("traversal.png")
    """
    num_concepts = pipe.concept_encoder.config.num_concepts
    walk = pipe.traverse(image, concept_index=list(range(num_concepts)), values=sweeps, num_inference_steps=num_inference_steps,
                         generator=torch.Generator().manual_seed(seed), output_type="pil")
    num_values = sweeps.shape[1]
    steps = ["2nd pct"] + [""] * (num_values - 2) + ["98th pct"] if num_values >= 2 else [""] * num_values
    return labelled_grid([tile for row in walk.images for tile in row], rows=num_concepts, cols=num_values,
                         row_labels=concept_names(num_concepts, factor_labels), col_labels=steps,
                         title="traversal: one concept swept over its range on the data, the others fixed")


@dataclass
class ConceptPictures:
    """What `draw_concept_pictures` wrote: `files` (name -> PNG path) and `concept_map` (`map_concepts`'s result)."""

    files: dict
    concept_map: dict


def draw_concept_pictures(pipe, data, folder: str, steps: int = 25, seed: int = 0, map_points: int = 2000) -> ConceptPictures:
    """Write concept_factor_map.png, then swap.png and traversal.png labelled with the factor each concept carries.

    The factor labels come from `map_points` images of `data` (`concept_diffusion.evaluation.concept_factors`).
    """
    from concept_diffusion.evaluation.concept_factors import map_concepts, plot_concept_factor_map

    concept_map = map_concepts(pipe, data, map_points, seed)
    files = {name: os.path.join(folder, f"{name}.png") for name in ("concept_factor_map", "swap", "traversal")}
    plot_concept_factor_map(concept_map["normalised_mutual_information"], concept_map["accuracy"], concept_map["factors"],
                            files["concept_factor_map"])
    images = data.sample_observations(8, np.random.RandomState(seed + 1))  # numpy (8, H, W, C) in [0, 1]
    sweeps = torch.stack([torch.linspace(low, high, 8) for low, high in concept_ranges(pipe, data, seed=seed).tolist()])
    pictures = {"swap": concept_swap_grid(pipe, images[:4], images[4:8], steps, seed, factor_labels=concept_map["labels"]),
                "traversal": concept_traversal_grid(pipe, images[:1], sweeps, steps, seed, factor_labels=concept_map["labels"])}
    for name, picture in pictures.items():
        with atomic_path(files[name], ".png") as temporary:
            picture.save(temporary)
    return ConceptPictures(files=files, concept_map=concept_map)


def concept_ranges(pipe, data, num_images: int = 512, seed: int = 0) -> torch.Tensor:
    """(N, 2) of the 2nd and 98th percentile of each concept over `num_images` images of `data`."""
    images = data.sample_observations(num_images, np.random.RandomState(seed))
    concepts = torch.cat([pipe.encode(images[i : i + 128]) for i in range(0, num_images, 128)])
    return torch.quantile(concepts, torch.tensor([0.02, 0.98]), dim=0).T


def _font(size: int) -> PIL.ImageFont.ImageFont:
    return PIL.ImageFont.load_default(size=size)


def labelled_grid(tiles: Sequence[PIL.Image.Image], rows: int, cols: int, row_labels: Optional[Sequence[str]] = None,
                  col_labels: Optional[Sequence[str]] = None, scale: int = 4, title: Optional[str] = None) -> PIL.Image.Image:
    """One image of `rows` x `cols` tiles (row-major), each enlarged `scale` times without smoothing,
    with a label to the left of each row and above each column.

    Example:
        >>> grid = labelled_grid(images, rows=2, cols=3, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    """
    if len(tiles) != rows * cols:
        raise ValueError(f"labelled_grid needs rows x cols = {rows * cols} tiles, got {len(tiles)}")
    for name, labels, count in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name} must have {count} entries, got {len(labels)}")
    width, height = tiles[0].size
    tile_w, tile_h = width * scale, height * scale
    font = _font(max(12, tile_h // 9))
    measure = PIL.ImageDraw.Draw(PIL.Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple:
        left, top, right, bottom = measure.multiline_textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    left_margin = max([text_size(label)[0] for label in row_labels or []] + [0]) + (12 if row_labels else 0)
    top_margin = max([text_size(label)[1] for label in col_labels or []] + [0]) + (12 if col_labels else 0)
    title_height = text_size(title)[1] + 14 if title else 0
    canvas = PIL.Image.new("RGB", (left_margin + cols * (tile_w + TILE_GAP), title_height + top_margin + rows * (tile_h + TILE_GAP)), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 6), title, fill="black", font=font)
    origin_y = title_height + top_margin
    for index, tile in enumerate(tiles):
        row, col = divmod(index, cols)
        enlarged = tile.convert("RGB").resize((tile_w, tile_h), PIL.Image.NEAREST)
        canvas.paste(enlarged, (left_margin + col * (tile_w + TILE_GAP), origin_y + row * (tile_h + TILE_GAP)))
    for col, label in enumerate(col_labels or []):
        label_w, label_h = text_size(label)
        x = left_margin + col * (tile_w + TILE_GAP) + (tile_w - label_w) // 2
        draw.multiline_text((x, title_height + top_margin - label_h - 8), label, fill="black", font=font, align="center")
    for row, label in enumerate(row_labels or []):
        label_h = text_size(label)[1]
        draw.multiline_text((6, origin_y + row * (tile_h + TILE_GAP) + (tile_h - label_h) // 2), label, fill="black", font=font)
    return canvas


def concept_names(num_concepts: int, factor_labels: Optional[List[str]] = None) -> List[str]:
    """ "concept 3" or, when the factor it carries is known, "concept 3\\n(floor_hue)"."""
    if factor_labels is None:
        return [f"concept {k}" for k in range(num_concepts)]
    return [f"concept {k}\n({label})" if label != "-" else f"concept {k}" for k, label in enumerate(factor_labels)]


def plot_curves(log_path: str, png_path: str) -> None:
    """Plot the loss and every metric of a JSONL training log against images seen (a metric scored once, such as
    the quickstart's final scores, is a number, not a curve: it is left to the log and metrics.json)."""
    # A Figure without pyplot: switching the backend (matplotlib.use("Agg")) would stop a notebook
    # that trained in-process from showing its own plots afterwards.
    from matplotlib.figure import Figure

    with open(log_path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    skip = {"step", "images_seen", "seconds", "lr", "final"}
    counts = {}
    for record in records:
        for key, value in record.items():
            if key not in skip and isinstance(value, (int, float)):
                counts[key] = counts.get(key, 0) + 1
    keys = sorted((key for key, count in counts.items() if count > 1), key=lambda key: (key != "loss", key))
    if not keys:
        return
    cols = min(3, len(keys))
    figure = Figure(figsize=(4.5 * cols, 3.2 * math.ceil(len(keys) / cols)))
    axes = figure.subplots(math.ceil(len(keys) / cols), cols, squeeze=False)
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
