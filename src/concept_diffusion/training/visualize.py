"""Pictures of a run: per-concept swap grids and loss/metric curves."""

import json
import math
import os

import torch
from diffusers.utils import make_image_grid


def concept_swap_grid(pipe, sources: torch.Tensor, references: torch.Tensor, num_inference_steps: int = 20, seed: int = 0):
    """One row per source image: the source, its reference, then the source with concept k copied
    from the reference, for every concept k. Each row starts from one noise, so the columns differ
    only by the swapped concept: a disentangled concept changes one factor.

    `sources` and `references` are (B, C, H, W) tensors in [-1, 1] of the same length.
    """
    concepts = pipe.encode(sources)
    reference_concepts = pipe.encode(references)
    rows, num_concepts = concepts.shape
    edited = concepts[:, None].repeat(1, num_concepts, 1)  # (rows, N, N)
    columns = torch.arange(num_concepts)
    edited[:, columns, columns] = reference_concepts[:, columns]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((rows, *pipe.latent_shape), generator=generator)
    images = pipe(concepts=edited.reshape(rows * num_concepts, -1), latents=noise.repeat_interleave(num_concepts, 0),
                  num_inference_steps=num_inference_steps, output_type="pil").images
    originals = pipe.image_processor.postprocess(torch.cat([sources, references]).float(), output_type="pil")
    tiles = []
    for row in range(rows):
        tiles += [originals[row], originals[rows + row]] + images[row * num_concepts : (row + 1) * num_concepts]
    return make_image_grid(tiles, rows=rows, cols=num_concepts + 2)


def plot_curves(log_path: str, png_path: str) -> None:
    """Plot the loss and every metric of a JSONL training log against images seen."""
    # A Figure without pyplot: switching the backend (matplotlib.use("Agg")) would stop a notebook
    # that trained in-process from showing its own plots afterwards.
    from matplotlib.figure import Figure

    with open(log_path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    skip = {"step", "images_seen", "seconds", "lr", "final"}
    keys = sorted({key for record in records for key in record if key not in skip and isinstance(record[key], (int, float))},
                  key=lambda key: (key != "loss", key))
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
    temporary = png_path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, png_path)
