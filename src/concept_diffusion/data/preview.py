"""A picture of a data set's factors: one row per factor, that factor swept, the others fixed."""

import numpy as np

from concept_diffusion.data.ground_truth import GroundTruthData


def preview_grid(data: GroundTruthData, columns: int = 8, seed: int = 0, cell_size: int = 64):
    """A PIL image with one row per factor: up to `columns` distinct values of that factor, evenly
    spaced over its range, with every other factor held at the same randomly drawn values (`seed`).

    Example:
        >>> preview_grid(load_ground_truth("shapes3d-procedural")).save("shapes3d.png")
    """
    from PIL import Image, ImageDraw

    if columns < 2:
        raise ValueError(f"columns: expected at least 2 values per row, got {columns}")
    base = data.sample_factors(1, np.random.RandomState(seed))[0]
    label_width = 8 * max(len(name) for name in data.factor_names) + 12
    sheet = Image.new("RGB", (label_width + columns * cell_size, data.num_factors * cell_size), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (name, size) in enumerate(zip(data.factor_names, data.factor_sizes)):
        values = np.unique(np.round(np.linspace(0, size - 1, min(columns, size))).astype(np.int64))
        factors = np.repeat(base[None], len(values), axis=0)
        factors[:, row] = values
        images = data._images_uint8(data.factors_to_index(factors))
        for column, image in enumerate(images):
            picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
            resample = Image.NEAREST if picture.width < cell_size else Image.LANCZOS
            sheet.paste(picture.resize((cell_size, cell_size), resample), (label_width + column * cell_size, row * cell_size))
        draw.text((6, row * cell_size + cell_size // 2 - 6), name, fill="black")
    return sheet
