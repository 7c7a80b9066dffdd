"""Labelled picture grids: tiles enlarged for reading, rows and columns named.

`pipe.swap` and `pipe.traverse` return bare grids (the pipeline module stays free of drawing code,
because it is copied into Hub repos); the pictures a person looks at go through `labelled_grid`.
"""

from typing import List, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

TILE_GAP = 4


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def labelled_grid(tiles: Sequence[Image.Image], rows: int, cols: int, row_labels: Optional[Sequence[str]] = None,
                  col_labels: Optional[Sequence[str]] = None, scale: int = 4, title: Optional[str] = None) -> Image.Image:
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
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple:
        left, top, right, bottom = measure.multiline_textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    left_margin = max([text_size(label)[0] for label in row_labels or []] + [0]) + (12 if row_labels else 0)
    top_margin = max([text_size(label)[1] for label in col_labels or []] + [0]) + (12 if col_labels else 0)
    title_height = text_size(title)[1] + 14 if title else 0
    canvas = Image.new("RGB", (left_margin + cols * (tile_w + TILE_GAP), title_height + top_margin + rows * (tile_h + TILE_GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 6), title, fill="black", font=font)
    origin_y = title_height + top_margin
    for index, tile in enumerate(tiles):
        row, col = divmod(index, cols)
        enlarged = tile.convert("RGB").resize((tile_w, tile_h), Image.NEAREST)
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
