"""`dsprites-procedural`: dSprites' factors and look, rendered on demand (no download).

Like the original (Matthey et al. 2017): a white square, ellipse or heart on black, binary pixels,
scale linspace(0.5, 1, 6), orientation linspace(0, 2 pi, 40), x and y linspace(0, 1, 32). As in the
original, orientation 0 and 2 pi are the same angle, so those two values give the same image.
"""

import colorsys

import numpy as np

from concept_diffusion.data.procedural import ProceduralData

SHAPES = ["square", "ellipse", "heart"]
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)

# Geometry in units of the image width, chosen so the largest shape, turned any way, stays inside.
HALF_SIZE_AT_SCALE_1 = 0.14
POSITION_MARGIN = 0.17
BINARY_SIZE = 64               # the original's size: binary pixels from here up


DSPRITES_CITATION = '@misc{dsprites17,\n  author={Matthey, Loic and Higgins, Irina and Hassabis, Demis and Lerchner, Alexander},\n  title={dSprites: Disentanglement testing Sprites dataset},\n  howpublished={https://github.com/deepmind/dsprites-dataset/},\n  year={2017}\n}'

class DSpritesProcedural(ProceduralData):
    """dSprites' grid (shape 3, scale 6, orientation 40, posX 32, posY 32: 737,280 images).

    Images are (H, W, 1). At 64x64 and above pixels are 0 or 1, as in the original; below, each
    pixel is the coverage of a 64x64-or-finer binary rendering (grey edges), because binary pixels
    that coarse cannot show every scale and position step. Factor order and value order follow the
    official .npz (its constant `color` factor is left out, as in disentanglement_lib).

    Example:
        >>> data = DSpritesProcedural(image_size=64)
        >>> data.render(np.array([[2, 5, 0, 16, 16]])).shape   # a big heart in the middle
        (1, 64, 64, 1)
    """

    provenance = "Rendered procedurally by concept-diffusion (a re-creation of DeepMind's dSprites factor grid)."
    license = 'apache-2.0'
    citation = DSPRITES_CITATION

    name = "dsprites-procedural"
    num_channels_rendered = 1
    factor_names = ["shape", "scale", "orientation", "position_x", "position_y"]
    factor_sizes = [3, 6, 40, 32, 32]
    factor_values = [
        SHAPES,
        [f"{v:.2f}" for v in SCALES],
        [f"{np.degrees(v):.1f}deg" for v in ORIENTATIONS],
        [f"{v:.3f}" for v in POSITIONS],
        [f"{v:.3f}" for v in POSITIONS],
    ]

    def render(self, factors: np.ndarray, chunk: int = 1024) -> np.ndarray:
        out = np.empty((len(factors), *self.observation_shape), dtype=np.float32)
        for start in range(0, len(factors), chunk):
            out[start : start + chunk, ..., 0] = self._render_chunk(factors[start : start + chunk])
        return out

    def _render_chunk(self, factors: np.ndarray) -> np.ndarray:
        supersampling = -(-BINARY_SIZE // self.image_size)
        size = self.image_size * supersampling
        centers = (np.arange(size, dtype=np.float32) + 0.5) / size
        shape, scale, angle = factors[:, 0], SCALES[factors[:, 1]], ORIENTATIONS[factors[:, 2]]
        span = 1.0 - 2.0 * POSITION_MARGIN
        cx = (POSITION_MARGIN + span * POSITIONS[factors[:, 3]]).astype(np.float32)
        cy = (POSITION_MARGIN + span * POSITIONS[factors[:, 4]]).astype(np.float32)
        half = (HALF_SIZE_AT_SCALE_1 * scale).astype(np.float32)
        cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)

        # Pixel offsets from each sprite's centre, turned into the sprite's own frame (y up).
        dx = centers[None, None, :] - cx[:, None, None]
        dy = cy[:, None, None] - centers[None, :, None]
        u = (cos[:, None, None] * dx + sin[:, None, None] * dy) / half[:, None, None]
        v = (-sin[:, None, None] * dx + cos[:, None, None] * dy) / half[:, None, None]

        inside = np.zeros(u.shape, dtype=bool)
        for value, test in enumerate((_square, _ellipse, _heart)):
            rows = shape == value
            if rows.any():
                inside[rows] = test(u[rows], v[rows])
        if supersampling == 1:
            return inside.astype(np.float32)
        blocks = inside.reshape(len(factors), self.image_size, supersampling, self.image_size, supersampling)
        return blocks.mean(axis=(2, 4), dtype=np.float32)


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _ellipse(u, v):
    return u * u + (2.0 * v) * (2.0 * v) <= 1.0     # semi-axes 1 and 0.5


def _heart(u, v):
    # The classic implicit heart, (x^2 + y^2 - 1)^3 <= x^2 y^3, centred and scaled to the sprite box.
    x, y = u * 1.25, v * 1.25 + 0.2
    x2, r = x * x, x * x + y * y - 1.0
    return r * r * r - x2 * y * y * y <= 0.0     # products, not ** 3: numpy's float power is slow


COLOUR_HUES = np.linspace(0.0, 1.0, 6, endpoint=False)
COLOUR_BRIGHTNESS = np.linspace(0.4, 1.0, 4)
COLOUR_SATURATION = 0.8
# RGB of every (hue, brightness) pair, (hues, brightness levels, 3): built once, looked up per sprite.
COLOURS = np.array([[colorsys.hsv_to_rgb(hue, COLOUR_SATURATION, value) for value in COLOUR_BRIGHTNESS] for hue in COLOUR_HUES],
                   dtype=np.float32)


class ColourDSpritesProcedural(DSpritesProcedural):
    """dSprites' shapes in colour on black: a hue (6 around the wheel) and a brightness (HSV value 0.4..1.0,
    4 steps) before dSprites' five factors (70,778,880 images, rendered on demand).

    Made to test a recipe on colours that differ in brightness, not only in hue as shapes3d's do (all of
    its hues share one saturation and value): here a colour change moves the image's intensity too.

    Example:
        >>> data = ColourDSpritesProcedural(image_size=32)
        >>> data.render(np.array([[0, 3, 2, 5, 0, 16, 16]])).shape   # a big bright red heart in the middle
        (1, 32, 32, 3)
    """

    provenance = "Rendered procedurally by concept-diffusion: dSprites' factor grid, coloured, with hue and brightness factors."
    name = "colour-dsprites-procedural"
    num_channels_rendered = 3
    factor_names = ["hue", "brightness", *DSpritesProcedural.factor_names]
    factor_sizes = [len(COLOUR_HUES), len(COLOUR_BRIGHTNESS), *DSpritesProcedural.factor_sizes]
    factor_values = [[f"{v:.2f}" for v in COLOUR_HUES], [f"{v:.2f}" for v in COLOUR_BRIGHTNESS], *DSpritesProcedural.factor_values]

    def render(self, factors: np.ndarray, chunk: int = 1024) -> np.ndarray:
        out = np.empty((len(factors), *self.observation_shape), dtype=np.float32)
        for start in range(0, len(factors), chunk):
            rows = factors[start : start + chunk]
            coverage = self._render_chunk(rows[:, 2:])
            out[start : start + chunk] = coverage[..., None] * COLOURS[rows[:, 0], rows[:, 1]][:, None, None, :]
        return out
