"""Property test: random, often malformed inputs to every public entry point of the pipeline.

Each call must either succeed with a well-formed result or raise a ValueError / TypeError whose
message names the offending argument. Anything else (an IndexError from deep inside torch, a
RuntimeError about a reduction over an empty dimension, a message that does not say which input
was wrong) is an unclear failure, and there must be none. Seeded, tiny preset, one step.
"""

import numpy as np
import PIL.Image
import pytest
import torch

from concept_diffusion import build_pipeline

NUM_CASES = 360
SIZE, CHANNELS, NUM_CONCEPTS, TOKEN_DIM = 32, 3, 4, 8
NUMPY_DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.int64, np.bool_, np.complex64]
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64, torch.bool, torch.complex64]
PIL_MODES = ["RGB", "L", "RGBA", "P", "I;16", "CMYK", "1", "F", "I"]
# Words an error message may use to name each argument.
NAMES = {
    "images": ["images"],
    "reference_images": ["reference_images"],
    "concepts": ["concepts"],
    "tokens": ["tokens"],
    "values": ["values"],
    "concept_indices": ["concept ind"],
    "concept_index": ["concept ind"],
    "generator": ["generator"],
}


def random_values(rng, shape):
    """Mostly valid [0, 1] floats; sometimes 0..255, negative, NaN or inf."""
    values = rng.random_sample(shape)
    kind = rng.randint(6)
    if values.size and kind == 1:
        values = values * 255
    elif values.size and kind == 2:
        values = values * 2 - 1
    elif values.size and kind == 3:
        values.flat[rng.randint(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return values


def random_shape(rng, channels_last):
    batch = int(rng.choice([0, 1, 2, 3]))
    channels = int(rng.choice([CHANNELS, CHANNELS, 1, 4]))
    size = int(rng.choice([SIZE, SIZE, SIZE, 16, 0]))
    image = (size, size, channels) if channels_last else (channels, size, size)
    return [image, (batch, *image), (1, 1, *image), (batch, size, size)][rng.choice(4, p=[0.3, 0.5, 0.1, 0.1])]


def random_array(rng):
    dtype = NUMPY_DTYPES[rng.choice(len(NUMPY_DTYPES), p=[0.5, 0.1, 0.1, 0.1, 0.08, 0.06, 0.06])]
    values = random_values(rng, random_shape(rng, channels_last=True))
    if dtype == np.uint8:
        return np.clip(values * 255, 0, 255).astype(np.uint8) if np.isfinite(values).all() else values.astype(np.float32)
    with np.errstate(invalid="ignore"):
        return values.astype(dtype)


def random_tensor(rng):
    dtype = TORCH_DTYPES[rng.choice(len(TORCH_DTYPES), p=[0.5, 0.08, 0.08, 0.08, 0.08, 0.06, 0.06, 0.06])]
    values = torch.from_numpy(random_values(rng, random_shape(rng, channels_last=False)))
    if dtype == torch.uint8:
        return (values.nan_to_num(0, 0, 0) * 255).clamp(0, 255).to(torch.uint8)
    return values.to(dtype)


def random_pil(rng):
    mode = PIL_MODES[rng.choice(len(PIL_MODES), p=[0.5, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.05])]
    size = int(rng.choice([SIZE, SIZE, 16, 0]))
    if mode == "RGB" and size:
        return PIL.Image.fromarray((rng.random_sample((size, size, 3)) * 255).astype(np.uint8))
    return PIL.Image.new(mode, (size, size))


def valid_images(rng):
    """Well-formed images in one of the accepted forms and dtypes, so that success is exercised too."""
    batch = int(rng.randint(1, 4))
    values = rng.random_sample((batch, SIZE, SIZE, CHANNELS))
    kind = rng.randint(6)
    if kind == 0:
        return values.astype([np.float32, np.float64, np.float16][rng.randint(3)])
    if kind == 1:
        return (values * 255).astype(np.uint8)
    if kind == 2:
        return torch.from_numpy(values).permute(0, 3, 1, 2).to([torch.float32, torch.float16, torch.bfloat16][rng.randint(3)])
    if kind == 3:
        return [PIL.Image.fromarray((image * 255).astype(np.uint8)) for image in values]
    if kind == 4:
        return list(values.astype(np.float32))
    return values[0].astype(np.float32)


def random_images(rng):
    if rng.rand() < 0.45:
        return valid_images(rng)
    kind = rng.choice(["array", "tensor", "pil", "list", "empty list", "nested", "other"],
                      p=[0.3, 0.3, 0.15, 0.13, 0.04, 0.04, 0.04])
    if kind == "array":
        return random_array(rng)
    if kind == "tensor":
        return random_tensor(rng)
    if kind == "pil":
        return random_pil(rng)
    if kind == "list":
        makers = [random_array, random_tensor, random_pil]
        first = rng.randint(3)
        return [makers[first if rng.rand() < 0.8 else rng.randint(3)](rng) for _ in range(rng.randint(1, 4))]
    if kind == "empty list":
        return []
    if kind == "nested":
        return [[random_pil(rng)]]
    return [None, "image.png", 3, {"image": 1}, 0.5][rng.randint(5)]


def random_table(rng, width):
    """Concepts-like input: a (B, width) table in some dtype or container, or something else."""
    batch, columns = int(rng.choice([0, 1, 2])), int(rng.choice([width, width, width - 1, width + 1]))
    values = random_values(rng, (batch, columns)) * 4 - 2
    kind = rng.randint(8)
    if kind == 0:
        return values.tolist()
    if kind == 1:
        return values.astype(NUMPY_DTYPES[rng.randint(len(NUMPY_DTYPES))])
    if kind == 2:
        return torch.from_numpy(values).to(TORCH_DTYPES[rng.randint(len(TORCH_DTYPES))])
    if kind == 3:
        return [[1.0, 2.0], [3.0]]
    if kind == 4:
        return values[0] if batch else values.reshape(-1)
    return torch.from_numpy(values).float()


def random_indices(rng):
    return [0, 3, [0, 2], [], [4], -1, [1, 1], 1.5, "0", np.int64(2), torch.tensor([1, 3]), True][rng.randint(12)]


def random_generator(rng, n):
    choice = rng.randint(5)
    if choice == 0:
        return [torch.Generator().manual_seed(i) for i in range(int(rng.randint(0, 4)))]
    return None if choice == 1 else (torch.Generator().manual_seed(0) if choice < 4 else n)


def random_call(rng):
    """(entry point name, kwargs) with random arguments."""
    entry = ["encode", "call images", "call concepts", "call tokens", "swap", "traverse"][rng.randint(6)]
    if entry == "encode":
        return entry, {"images": random_images(rng)}
    if entry == "call images":
        return entry, {"images": random_images(rng), "generator": random_generator(rng, 1)}
    if entry == "call concepts":
        return entry, {"concepts": random_table(rng, NUM_CONCEPTS), "generator": random_generator(rng, 1)}
    if entry == "call tokens":
        tokens = torch.from_numpy(random_values(rng, (int(rng.choice([0, 1, 2])), NUM_CONCEPTS, int(rng.choice([TOKEN_DIM, 3])))))
        return entry, {"tokens": tokens.to(TORCH_DTYPES[rng.choice(8, p=[0.7, 0.1, 0, 0, 0.05, 0.05, 0.05, 0.05])])}
    if entry == "swap":
        return entry, {"images": random_images(rng), "reference_images": random_images(rng),
                       "concept_indices": random_indices(rng), "pairwise": bool(rng.rand() < 0.3)}
    values = [None, [0.0, 1.0], np.linspace(-2, 2, 3), [], [[0.0]], torch.tensor([np.nan]), 2.0, "up", [1 + 2j]][rng.randint(9)]
    return entry, {"images": random_images(rng), "concept_index": random_indices(rng), "values": values,
                   "generator": random_generator(rng, 1)}


def invoke(pipe, entry, kwargs):
    if entry == "encode":
        return pipe.encode(**kwargs)
    if entry.startswith("call"):
        return pipe(num_inference_steps=1, output_type="np", **kwargs)
    method = pipe.swap if entry == "swap" else pipe.traverse
    return method(num_inference_steps=1, output_type="np", **kwargs)


def check_result(entry, result) -> bool:
    if entry == "encode":
        return result.ndim == 2 and result.shape[1] == NUM_CONCEPTS and bool(torch.isfinite(result).all())
    images = result.images
    return images.shape[-3:] == (SIZE, SIZE, CHANNELS) and bool(np.isfinite(images).all()) and images.min() >= 0 and images.max() <= 1


def describe(entry, kwargs):
    def short(value):
        if isinstance(value, (np.ndarray, torch.Tensor)):
            return f"{type(value).__name__}{tuple(value.shape)}:{value.dtype}"
        if isinstance(value, PIL.Image.Image):
            return f"PIL({value.mode},{value.size})"
        if isinstance(value, list):
            return "[" + ", ".join(short(v) for v in value[:4]) + "]"
        return repr(value)

    return f"{entry}(" + ", ".join(f"{k}={short(v)}" for k, v in kwargs.items()) + ")"


@pytest.fixture(scope="module")
def pipe():
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.concept_encoder.config.sample_size == SIZE and pipe.concept_encoder.config.num_concepts == NUM_CONCEPTS
    return pipe


def test_random_inputs_succeed_or_raise_a_clear_error(pipe):
    rng = np.random.RandomState(2024)
    unclear, outcomes = [], {"success": 0, "clear error": 0}
    for _ in range(NUM_CASES):
        entry, kwargs = random_call(rng)
        try:
            result = invoke(pipe, entry, kwargs)
        except (ValueError, TypeError) as error:
            names = [word for name in kwargs for word in NAMES.get(name, [name])]
            if any(word in str(error) for word in names):
                outcomes["clear error"] += 1
            else:
                unclear.append(f"{describe(entry, kwargs)} -> {type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 -- anything else is what this test looks for
            unclear.append(f"{describe(entry, kwargs)} -> {type(error).__name__}: {error}")
        else:
            if check_result(entry, result):
                outcomes["success"] += 1
            else:
                unclear.append(f"{describe(entry, kwargs)} -> a malformed result")
    assert not unclear, f"{len(unclear)} unclear failures:\n" + "\n".join(unclear[:20])
    # Both kinds of outcome are well represented, so the generator exercises both paths.
    assert outcomes["success"] >= NUM_CASES // 10 and outcomes["clear error"] >= NUM_CASES // 3, outcomes
