"""Images from users (uploads, files, any size or mode) as the model takes them."""

import numpy as np
import PIL.Image


def fit_image(image, sample_size: int, channels: int = 3) -> np.ndarray:
    """A PIL image or a numpy array (H, W[, C]), uint8 or float in [0, 1], of any size -> float32
    (sample_size, sample_size, channels) in [0, 1], resized with Lanczos and converted to RGB or L.

    Example:
        >>> fit_image(PIL.Image.open("photo.jpg"), sample_size=64).shape
        (64, 64, 3)
    """
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
                raise ValueError("image as a float array must hold values in [0, 1]: divide uint8 pixels by 255")
            array = (array * 255).round().astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(f"image must be an array (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        image = PIL.Image.fromarray(array)
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"image must be a PIL image or a numpy array, got {type(image).__name__}")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"the editor handles models with 1 or 3 image channels, this one has {channels}")
    image = image.convert(mode)
    if image.size != (sample_size, sample_size):
        image = image.resize((sample_size, sample_size), PIL.Image.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array
