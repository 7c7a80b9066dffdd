"""ConceptDiffusionPipeline: encode images to concepts, decode (edited) concepts back to images.

This file imports only torch, diffusers (and what diffusers itself depends on: numpy, PIL) and the
standard library: `save_pretrained` copies it into Hub repos as `pipeline.py`, so that users
without concept-diffusion can load a pipeline with
`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`. What needs the package (safe
loading that never runs a folder's code, a push with a model card) is added by the subclass that
`concept_diffusion.ConceptDiffusionPipeline` exports (`concept_diffusion/pipelines/__init__.py`).

Images follow diffusers' convention: PIL images, numpy arrays (H, W, C) and tensors (B, C, H, W),
all with values in [0, 1] as `VaeImageProcessor` takes them, so an `output_type="pt"` result can
be fed back in. The models work in [-1, 1]; `preprocess` and `postprocess` are the only places
that convert between the two.
"""

import inspect
import json
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput, make_image_grid
from diffusers.utils.torch_utils import randn_tensor

ImageInput = Union[PIL.Image.Image, np.ndarray, torch.Tensor, List[PIL.Image.Image], List[np.ndarray], List[torch.Tensor]]
Generators = Optional[Union[torch.Generator, List[torch.Generator]]]

# The file name plain diffusers looks for at the repo root (model_index.json names it).
PIPELINE_FILE = "pipeline.py"
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
IMAGE_FORMATS = "PIL images, numpy arrays (H, W, C) or tensors (B, C, H, W), with values in [0, 1]"
# Inputs a few thousandths outside [0, 1] (rounding upstream) are clamped; anything further is an error.
RANGE_TOLERANCE = 1e-3
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# A UNet whose class embedding is a projection takes the flattened concept tokens there, instead of through
# cross-attention: the paper's AdaGN control (the ResBlocks' scale-shift norm applies the time embedding).
ADAGN_CLASS_EMBED = "projection"


def unet_condition(unet_config, tokens: torch.Tensor) -> dict:
    """The UNet's conditioning arguments for concept tokens `(B, N, d)`: the cross-attention context, plus
    (AdaGN UNets, `class_embed_type="projection"`) the flattened tokens as the class-embedding input."""
    if unet_config.class_embed_type == ADAGN_CLASS_EMBED:
        return {"encoder_hidden_states": tokens, "class_labels": tokens.flatten(1)}
    return {"encoder_hidden_states": tokens}


def images_to_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """Unscaled first-stage latents of model-space images (pre-quantisation for a VQModel, the posterior mean for a
    KL autoencoder): what the UNet is trained on, before the vae's scaling factor."""
    encoded = vae.encode(images.to(vae.dtype))
    return encoded.latents if hasattr(encoded, "latents") else encoded.latent_dist.mode()


@dataclass
class ConceptDiffusionPipelineOutput(BaseOutput):
    """Output of `ConceptDiffusionPipeline.__call__`.

    Args:
        images: decoded images, following `output_type`: a list of PIL images, a numpy array
            (B, H, W, C) in [0, 1], a tensor (B, C, H, W) in [0, 1], or the denoised latents.
        concepts: the concepts (B, N) that were decoded; None when tokens were given.
    """

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    concepts: Optional[torch.Tensor]


@dataclass
class ConceptEditOutput(BaseOutput):
    """Output of `swap` and `traverse`.

    Args:
        images: the edited images as a grid of `rows x columns`: a list of lists of PIL images, or an
            array / tensor with two leading grid axes, following `output_type`.
        grid: one PIL image of the whole grid, with the inputs in the first column (and, for `swap`,
            the references in the first row), ready to save; None for `output_type="latent"`.
        concepts: the edited concepts, `(rows, columns, N)`.
    """

    images: Union[List[List[PIL.Image.Image]], np.ndarray, torch.Tensor]
    grid: Optional[PIL.Image.Image]
    concepts: torch.Tensor


@dataclass
class ConceptInversionOutput(BaseOutput):
    """Output of `invert`.

    Args:
        latents: the starting noise `(B, C, h, w)` from which deterministic DDIM (eta 0) with the same number of
            steps and the images' own concepts reconstructs them; pass it as `latents=` to `__call__`, `swap` or
            `traverse`.
        concepts: the images' concepts `(B, N)`.
    """

    latents: torch.Tensor
    concepts: torch.Tensor


# ---------------------------------------------------------------------- input checks


def _unit_batch(images, name: str, pil_mode: Optional[str]) -> torch.Tensor:
    """Any accepted image input -> a float32 tensor (B, C, H, W) with B >= 1, values not yet checked."""
    if isinstance(images, (list, tuple)):
        return _stack_items(images, name, pil_mode)
    if isinstance(images, PIL.Image.Image):
        return _pil_batch(images, name, pil_mode)
    if isinstance(images, np.ndarray):
        batch = _numpy_batch(images, name)
    elif isinstance(images, torch.Tensor):
        batch = _tensor_batch(images, name)
    else:
        raise TypeError(f"{name} must be {IMAGE_FORMATS}, got {type(images).__name__}")
    if batch.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(batch.shape)}): pass at least one image")
    return batch


def _stack_items(images: Sequence, name: str, pil_mode: Optional[str]) -> torch.Tensor:
    if len(images) == 0:
        raise ValueError(f"{name} is an empty list: pass at least one image")
    batches = []
    for i, image in enumerate(images):
        if not isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor)):
            raise TypeError(f"{name}[{i}] is a {type(image).__name__}: a list of images holds {IMAGE_FORMATS}")
        batches.append(_unit_batch(image, f"{name}[{i}]", pil_mode))
    shapes = {tuple(batch.shape[1:]) for batch in batches}
    if len(shapes) > 1:
        raise ValueError(
            f"{name} holds images of different shapes (channels, height, width) {sorted(shapes)}: "
            "resize and convert them to one size and mode first"
        )
    return torch.cat([batch.to(batches[0].device) for batch in batches])


def _pil_batch(image: PIL.Image.Image, name: str, pil_mode: Optional[str]) -> torch.Tensor:
    if image.mode != pil_mode:
        hint = f"convert with image.convert({pil_mode!r})" if pil_mode else "pass numpy arrays or tensors instead"
        raise ValueError(f"{name} must be {pil_mode or 'multi-channel'} images for this encoder, got mode {image.mode!r}: {hint}")
    if 0 in image.size:
        raise ValueError(f"{name} is an empty image (size {image.size}): pass an image with pixels")
    return VaeImageProcessor.numpy_to_pt(VaeImageProcessor.pil_to_numpy(image))


def _numpy_batch(array: np.ndarray, name: str) -> torch.Tensor:
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    else:
        raise TypeError(
            f"{name} has dtype {array.dtype}: expected floats in [0, 1] or uint8 in 0..255; convert with "
            "array.astype(np.float32) (divided by 255 if it holds 0..255)"
        )
    array = array[None] if array.ndim == 3 else array
    if array.ndim != 4:
        raise ValueError(f"{name} as a numpy array must be (H, W, C) or (B, H, W, C), got shape {array.shape}")
    return VaeImageProcessor.numpy_to_pt(np.ascontiguousarray(array))


def _tensor_batch(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    elif tensor.is_floating_point():
        tensor = tensor.float()
    else:
        raise TypeError(
            f"{name} has dtype {tensor.dtype}: expected a float tensor with values in [0, 1] (or uint8 in 0..255); "
            "convert with tensor.float()"
        )
    batch = tensor[None] if tensor.ndim == 3 else tensor
    if batch.ndim != 4:
        raise ValueError(f"{name} as a tensor must be (C, H, W) or (B, C, H, W), got shape {tuple(tensor.shape)}")
    return batch


def _check_unit_range(batch: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(batch).all():
        raise ValueError(f"{name} contain NaN or infinite values: clean or drop those images")
    low, high = float(batch.min()), float(batch.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} have values in [{low:.3g}, {high:.3g}], expected [0, 1] (diffusers' convention): "
            "divide 0..255 values by 255, map [-1, 1] tensors with (x + 1) / 2"
        )
    return batch.clamp(0, 1)


def _real_tensor(value, name: str) -> torch.Tensor:
    """A float32 tensor from a tensor, array or nested list of real numbers; TypeError/ValueError otherwise."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} has dtype {value.dtype}: expected real numbers")
        return value.float()
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{name} is not a rectangular table of numbers: {error}") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (a tensor, array or list), got {type(value).__name__} of dtype {array.dtype}")
    return torch.from_numpy(array.astype(np.float32))


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contain NaN or infinite values")


class ConceptDiffusionPipeline(DiffusionPipeline):
    r"""EncDiff: a concept encoder whose N concept tokens condition a diffusion UNet through cross-attention.

    Components:
        concept_encoder: a `ConceptEncoder`; images -> concepts (B, N) -> tokens (B, N, d).
        unet: a `UNet2DConditionModel` with `cross_attention_dim == d`, denoising latents (or pixels); the
            tokens enter through its cross-attention, or (AdaGN, `class_embed_type="projection"` with
            `projection_class_embeddings_input_dim == N * d`) through its time embedding.
        scheduler: any diffusers scheduler; DDIM for sampling by default.
        vae: a `VQModel` or `AutoencoderKL` first stage, or None for diffusion in pixel space.
        concept_prior: optional `ConceptPrior`, a distribution over concept vectors fitted on the training data,
            which `sample` draws new images from.

    Images in and out follow diffusers: PIL, numpy (H, W, C) or tensors (B, C, H, W), in [0, 1].
    Every variant of one image (a reconstruction, each swap, each traversal step) starts from the
    same noise, so an edit is the only difference between two outputs.

    Example:
        >>> pipe = ConceptDiffusionPipeline.from_pretrained("path/or/user/repo")
        >>> concepts = pipe.encode(images)                      # (B, N)
        >>> out = pipe(images=images, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
        >>> swapped = pipe.swap(images, references, concept_indices=[3])
        >>> swapped.grid.save("swap.png")
    """

    model_cpu_offload_seq = "concept_encoder->unet->vae"
    _optional_components = ["vae", "concept_prior"]
    _callback_tensor_inputs = ["latents", "tokens"]

    def __init__(self, concept_encoder, unet, scheduler, vae=None, concept_prior=None):
        super().__init__()
        token_dim = concept_encoder.config.token_dim
        if unet.config.cross_attention_dim != token_dim:
            raise ValueError(
                f"unet.config.cross_attention_dim ({unet.config.cross_attention_dim}) must equal the concept "
                f"encoder's token_dim ({token_dim}): build the UNet with cross_attention_dim={token_dim}"
            )
        flat_tokens = concept_encoder.config.num_concepts * token_dim
        if unet.config.class_embed_type == ADAGN_CLASS_EMBED and unet.config.projection_class_embeddings_input_dim != flat_tokens:
            raise ValueError(
                f"unet.config.projection_class_embeddings_input_dim ({unet.config.projection_class_embeddings_input_dim}) must "
                f"equal num_concepts * token_dim ({flat_tokens}) for AdaGN conditioning: rebuild the UNet with it"
            )
        if concept_prior is not None and concept_prior.config.num_concepts != concept_encoder.config.num_concepts:
            raise ValueError(
                f"concept_prior draws {concept_prior.config.num_concepts} concepts, but the concept encoder has "
                f"{concept_encoder.config.num_concepts}: fit the prior on this pipeline's concepts"
            )
        self.register_modules(concept_encoder=concept_encoder, unet=unet, scheduler=scheduler, vae=vae, concept_prior=concept_prior)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    # ------------------------------------------------------------------ images in and out

    def preprocess(self, images: ImageInput, name: str = "images") -> torch.Tensor:
        """Check `images` (PIL, numpy (H, W, C) or tensors (B, C, H, W), in [0, 1]) and return the encoder's input: `(B, C, H, W)` in [-1, 1] on
        the execution device, in the encoder's dtype. Errors name `name`."""
        batch = _unit_batch(images, name, PIL_MODES.get(self.concept_encoder.config.in_channels))
        self.concept_encoder.check_images(batch, name)  # channels and size, before looking at values
        batch = _check_unit_range(batch, name)
        # Contiguous, so that every input format runs the same kernels and gives the same bits.
        batch = self.image_processor.normalize(batch).contiguous()
        return batch.to(device=self._execution_device, dtype=self.concept_encoder.dtype)

    def postprocess(self, images: torch.Tensor, output_type: str = "pil"):
        """Model-space images `(B, C, H, W)` in [-1, 1] -> PIL images, numpy (B, H, W, C) or tensors, in [0, 1]."""
        return self.image_processor.postprocess(images.float(), output_type=output_type)

    # ------------------------------------------------------------------ argument checks

    @staticmethod
    def _check_sampling(num_inference_steps, eta, output_type) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a whole number >= 1, got {num_inference_steps!r}")
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0 <= eta < float("inf"):
            raise ValueError(f"eta must be a number >= 0 (0 = deterministic DDIM), got {eta!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @staticmethod
    def _check_generator(generator, num_noises: int) -> None:
        if generator is None or isinstance(generator, torch.Generator):
            return
        if not isinstance(generator, list) or not all(isinstance(g, torch.Generator) for g in generator):
            raise TypeError(f"generator must be a torch.Generator or a list of them, got {type(generator).__name__}")
        if len(generator) != num_noises:
            raise ValueError(
                f"generator is a list of {len(generator)} generators, but {num_noises} starting noise(s) are drawn "
                f"(one per input image): pass {num_noises} generators, or a single one"
            )

    def _check_tokens(self, tokens) -> torch.Tensor:
        config = self.concept_encoder.config
        tokens = _real_tensor(tokens, "tokens")
        expected = (config.num_concepts, config.token_dim)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected or tokens.shape[0] == 0:
            raise ValueError(
                f"tokens must have shape (batch >= 1, {expected[0]}, {expected[1]}), got {tuple(tokens.shape)}: "
                "pass tokens as returned by pipe.encode(images, return_tokens=True)"
            )
        _check_finite(tokens, "tokens")
        return tokens.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_concepts(self, concepts) -> torch.Tensor:
        num_concepts = self.concept_encoder.config.num_concepts
        concepts = _real_tensor(concepts, "concepts")
        if concepts.ndim != 2 or concepts.shape[1] != num_concepts or concepts.shape[0] == 0:
            raise ValueError(
                f"concepts must have shape (batch >= 1, {num_concepts}), got {tuple(concepts.shape)}: "
                "pass one value per concept and image, as returned by pipe.encode(images)"
            )
        _check_finite(concepts, "concepts")
        return concepts.to(self._execution_device)

    def _check_concept_indices(self, concept_indices) -> List[int]:
        if isinstance(concept_indices, (torch.Tensor, np.ndarray)):
            concept_indices = concept_indices.tolist()
        if isinstance(concept_indices, (numbers.Integral, np.integer)) and not isinstance(concept_indices, bool):
            concept_indices = [concept_indices]
        if not isinstance(concept_indices, (list, tuple, range)):
            raise TypeError(f"concept indices must be an int or a list of ints, got {type(concept_indices).__name__}")
        num_concepts = self.concept_encoder.config.num_concepts
        if not concept_indices:
            raise ValueError("concept indices are empty: name at least one concept, e.g. concept_indices=[0]")
        for index in concept_indices:
            if isinstance(index, bool) or not isinstance(index, (numbers.Integral, np.integer)) or not 0 <= index < num_concepts:
                raise ValueError(
                    f"concept index {index!r} is out of range: this model has {num_concepts} concepts, "
                    f"indices 0..{num_concepts - 1}"
                )
        return [int(index) for index in concept_indices]

    # ------------------------------------------------------------------ encoding

    @torch.no_grad()
    def encode(self, images: ImageInput, return_tokens: bool = False):
        """Encode images (PIL, numpy (H, W, C) or tensors (B, C, H, W), in [0, 1]) to their concepts
        `(B, N)`, and tokens `(B, N, d)` if `return_tokens`.

        Example:
            >>> concepts = pipe.encode(np.random.rand(4, 64, 64, 3))   # (4, 20)
        """
        output = self.concept_encoder(self.preprocess(images))
        if return_tokens:
            return output.concepts, output.tokens
        return output.concepts

    def concepts_to_tokens(self, concepts) -> torch.Tensor:
        """Map (edited) concepts `(B, N)` to the UNet's condition tokens `(B, N, d)`."""
        return self.concept_encoder.concepts_to_tokens(self._check_concepts(concepts))

    # ------------------------------------------------------------------ sampling

    @property
    def latent_shape(self):
        """(channels, height, width) of what the UNet denoises: vae latents, or pixels without a vae."""
        config = self.unet.config
        size = config.sample_size if isinstance(config.sample_size, int) else tuple(config.sample_size)[0]
        return (config.in_channels, size, size)

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the last call, as diffusers pipelines report it to callbacks."""
        return self._num_timesteps

    def _starting_latents(self, latents, num_noises: int, generator) -> torch.Tensor:
        shape = (num_noises, *self.latent_shape)
        device, dtype = self._execution_device, self.unet.dtype
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = _real_tensor(latents, "latents")
        if tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape} (one starting noise per input image, e.g. pipe.invert(images).latents), got {tuple(latents.shape)}")
        _check_finite(latents, "latents")
        return latents.to(device=device, dtype=dtype)

    def _denoise(
        self,
        tokens: torch.Tensor,
        noise_index: torch.Tensor,
        num_inference_steps: int,
        eta: float,
        generator,
        latents: Optional[torch.Tensor] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> torch.Tensor:
        """Run the reverse process for `tokens` (B, N, d) and return the final latents. Row b starts
        from noise `noise_index[b]`, so rows that share an index differ only by their tokens."""
        num_noises = int(noise_index.max()) + 1
        shape = (num_noises, *self.latent_shape)
        latents = self._starting_latents(latents, num_noises, generator)[noise_index] * self.scheduler.init_noise_sigma
        device, dtype = latents.device, latents.dtype
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self._num_timesteps = len(self.scheduler.timesteps)
        # Schedulers differ in what step() takes; a stochastic DDIM step gets the per-step noise
        # drawn here, shared like the starting noise, instead of drawing it per row itself.
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        step_kwargs = {"eta": eta} if "eta" in accepted else {}
        share_step_noise = eta > 0 and "variance_noise" in accepted
        if not share_step_noise and "generator" in accepted:
            # A scheduler drawing its own noise draws one row at a time from a list of generators.
            step_kwargs["generator"] = [generator[i] for i in noise_index.tolist()] if isinstance(generator, list) else generator
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = self.unet(model_input, t, **unet_condition(self.unet.config, tokens)).sample
            if share_step_noise:
                step_kwargs["variance_noise"] = randn_tensor(shape, generator=generator, device=device, dtype=dtype)[noise_index]
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                state = {"latents": latents, "tokens": tokens}
                outputs = callback_on_step_end(self, i, t, {name: state[name] for name in callback_on_step_end_tensor_inputs})
                latents = outputs.pop("latents", latents)
                tokens = outputs.pop("tokens", tokens)
        return latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (or pixels in pixel space) -> model-space images `(B, C, H, W)` in [-1, 1]."""
        if self.vae is None:
            return latents.clamp(-1, 1)
        latents = latents / self.vae.config.scaling_factor
        return self.vae.decode(latents.to(self.vae.dtype)).sample.clamp(-1, 1)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Model-space images `(B, C, H, W)` in [-1, 1] -> what the UNet denoises: scaled vae latents, or the pixels."""
        if self.vae is None:
            return images.to(self.unet.dtype)
        return (images_to_latents(self.vae, images) * self.vae.config.scaling_factor).to(self.unet.dtype)

    @torch.no_grad()
    def invert(self, images: ImageInput, num_inference_steps: int = 50, return_dict: bool = True):
        """DDIM inversion: the starting noise from which this pipeline, given the images' own concepts, redraws them.

        Runs the deterministic DDIM sampler backwards (diffusers' `DDIMInverseScheduler`, on the timesteps that
        `__call__` uses with the same `num_inference_steps`), conditioned on each image's concepts. Pass the result's
        `latents` to `__call__`, `swap` or `traverse` with the same `num_inference_steps` and `eta=0`: the edit then
        changes what the edited concepts carry and keeps the rest of the image (texture, anything the concepts do
        not carry), where fresh noise redraws it. Returns a `ConceptInversionOutput`, or `(latents, concepts)` with
        `return_dict=False`.

        Example:
            >>> inverted = pipe.invert(images, num_inference_steps=20)
            >>> same = pipe(images=images, latents=inverted.latents, num_inference_steps=20)   # ~ the images
            >>> edited = pipe.swap(images, references, [2], latents=inverted.latents, num_inference_steps=20)
        """
        from diffusers import DDIMInverseScheduler, DDIMScheduler

        self._check_sampling(num_inference_steps, 0.0, "pt")
        if not isinstance(self.scheduler, DDIMScheduler):
            raise ValueError(
                f"invert retraces DDIM, but this pipeline samples with {type(self.scheduler).__name__}: set "
                "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config) to invert and edit"
            )
        batch = self.preprocess(images)
        encoded = self.concept_encoder(batch)
        tokens = self._check_tokens(encoded.tokens)
        latents = self.encode_latents(batch)
        # The first step up starts from alphas_cumprod[0], where DDIM's last step ends unless set_alpha_to_one.
        inverse = DDIMInverseScheduler.from_config(self.scheduler.config, set_alpha_to_one=False)
        inverse.set_timesteps(num_inference_steps, device=latents.device)
        for t in self.progress_bar(inverse.timesteps):
            prediction = self.unet(inverse.scale_model_input(latents, t), t, **unet_condition(self.unet.config, tokens)).sample
            latents = inverse.step(prediction, t, latents).prev_sample
        self.maybe_free_model_hooks()
        if not return_dict:
            return (latents, encoded.concepts)
        return ConceptInversionOutput(latents=latents, concepts=encoded.concepts)

    def _check_callback(self, callback_on_step_end, tensor_inputs) -> Sequence[str]:
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"callback_on_step_end must be callable, got {type(callback_on_step_end).__name__}")
        if isinstance(tensor_inputs, str) or not all(name in self._callback_tensor_inputs for name in tensor_inputs):
            raise ValueError(
                f"callback_on_step_end_tensor_inputs must be a list drawn from {self._callback_tensor_inputs}, "
                f"got {tensor_inputs!r}"
            )
        return list(tensor_inputs)

    @torch.no_grad()
    def __call__(
        self,
        images: Optional[ImageInput] = None,
        concepts: Optional[torch.Tensor] = None,
        tokens: Optional[torch.Tensor] = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Generators = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[["ConceptDiffusionPipeline", int, int, Dict], Dict]] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ):
        """Reconstruct `images`, or decode given (possibly edited) `concepts` or `tokens`. Give exactly one.

        Args:
            images: PIL images, numpy (H, W, C) or tensors (B, C, H, W), with values in [0, 1].
            concepts: `(B, N)`, e.g. `pipe.encode(images)` with some entries changed.
            tokens: `(B, N, d)`, e.g. in "vector" token mode.
            num_inference_steps: denoising steps of the scheduler.
            eta: DDIM's eta (0 = deterministic sampling).
            generator: for the noise; one generator, or a list with one per image.
            latents: starting noise `(B, C, h, w)` instead of drawing it.
            output_type: "pil", "np", "pt" (all in [0, 1]) or "latent" (the denoised latents, not decoded).
            return_dict: return a `ConceptDiffusionPipelineOutput`, else a tuple `(images, concepts)`.
            callback_on_step_end: called as `callback(pipe, step, timestep, callback_kwargs)` after each
                step; it may return a dict whose "latents" (or "tokens") replace the current ones.
            callback_on_step_end_tensor_inputs: which of "latents", "tokens" `callback_kwargs` holds.

        Example:
            >>> out = pipe(images=images, num_inference_steps=20, generator=torch.Generator().manual_seed(0))
            >>> out.images[0].save("reconstruction.png")
        """
        given = [name for name, value in (("images", images), ("concepts", concepts), ("tokens", tokens)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"pass exactly one of images, concepts or tokens; got {given or 'none'}")
        self._check_sampling(num_inference_steps, eta, output_type)
        tensor_inputs = self._check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        if images is not None:
            concepts, tokens = self.encode(images, return_tokens=True)
        elif concepts is not None:
            concepts = self._check_concepts(concepts)
            tokens = self.concepts_to_tokens(concepts)
        tokens = self._check_tokens(tokens)
        self._check_generator(generator, tokens.shape[0])
        noise_index = torch.arange(tokens.shape[0], device=tokens.device)
        latents = self._denoise(tokens, noise_index, num_inference_steps, eta, generator, latents,
                                callback_on_step_end, tensor_inputs)
        result = latents if output_type == "latent" else self.postprocess(self.decode_latents(latents), output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result, concepts)
        return ConceptDiffusionPipelineOutput(images=result, concepts=concepts)

    @torch.no_grad()
    def sample(
        self,
        num_images: int = 1,
        prior: Optional[str] = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Generators = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """New images: concepts drawn from the pipeline's `concept_prior`, then decoded like `__call__`.

        `prior` picks the kind ("empirical": the concepts of a random training image; "independent": each concept
        from its own marginal, new combinations; "gmm": a Gaussian mixture), by default the prior's own. The
        generator draws the concepts first, then the starting noise; a list gives each image its own. Returns a
        `ConceptDiffusionPipelineOutput` with the drawn `concepts`, or `(images, concepts)` with `return_dict=False`.

        Example:
            >>> out = pipe.sample(8, prior="independent", num_inference_steps=20, generator=torch.Generator().manual_seed(0))
            >>> out.images[0].save("sample.png"); out.concepts.shape   # (8, N)
        """
        if self.concept_prior is None:
            raise ValueError(
                "this pipeline has no concept prior to sample from: fit one on its training data with "
                "`concept-diffusion fit-prior FOLDER --data DATA`, or in Python "
                "`attach_prior(pipe, fit_concept_prior(pipe, images))` from concept_diffusion.training.prior"
            )
        if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral) or num_images < 1:
            raise ValueError(f"num_images must be a whole number >= 1, got {num_images!r}")
        self._check_sampling(num_inference_steps, eta, output_type)
        self._check_generator(generator, int(num_images))
        concepts = self.concept_prior.sample(int(num_images), generator=generator, kind=prior).to(self._execution_device)
        return self(concepts=concepts, num_inference_steps=num_inference_steps, eta=eta, generator=generator,
                    latents=latents, output_type=output_type, return_dict=return_dict)

    # ------------------------------------------------------------------ editing

    def _edit(self, tokens, noise_index, rows, columns, inputs, header, num_inference_steps, eta, generator, output_type,
              latents=None):
        """Decode `rows x columns` edits and draw their grid: inputs in the first column, `header`
        (model-space images or None) in the first row. Row r starts from `latents[noise_index]` (drawn when None)."""
        latents = self._denoise(tokens, noise_index, num_inference_steps, eta, generator, latents)
        if output_type == "latent":
            return latents.reshape(rows, columns, *latents.shape[1:]), None
        decoded = self.decode_latents(latents)
        tiles = self.postprocess(decoded, "pil")
        input_tiles = self.postprocess(inputs, "pil")
        grid_tiles = []
        if header is not None:
            grid_tiles += [PIL.Image.new(tiles[0].mode, tiles[0].size, color=0)] + self.postprocess(header, "pil")
        for row in range(rows):
            grid_tiles += [input_tiles[row]] + tiles[row * columns : (row + 1) * columns]
        grid = make_image_grid(grid_tiles, rows=rows + (header is not None), cols=columns + 1)
        if output_type == "pil":
            return [tiles[row * columns : (row + 1) * columns] for row in range(rows)], grid
        flat = self.postprocess(decoded, output_type)
        return flat.reshape(rows, columns, *flat.shape[1:]), grid

    @staticmethod
    def _edit_output(images, grid, concepts, return_dict: bool):
        if not return_dict:
            return (images, grid, concepts)
        return ConceptEditOutput(images=images, grid=grid, concepts=concepts)

    @torch.no_grad()
    def swap(
        self,
        images: ImageInput,
        reference_images: ImageInput,
        concept_indices: Union[int, Sequence[int]],
        pairwise: bool = False,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Generators = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Copy the chosen concepts of each reference into each image and decode.

        The result is a grid: row i is image i, column j holds image i with the concepts
        `concept_indices` of reference j. With `pairwise=True`, image i only receives reference i's
        concepts (one column; both batches must have the same length). Each row starts from the
        same noise: drawn from `generator`, or `latents` `(len(images), C, h, w)`, e.g.
        `pipe.invert(images).latents` so that each edit keeps the rest of its image. Returns a
        `ConceptEditOutput`, or the tuple `(images, grid, concepts)` with `return_dict=False`.

        Example:
            >>> out = pipe.swap(images[:4], images[4:8], concept_indices=[2])
            >>> out.grid.save("swap.png")      # first row: references, first column: inputs
        """
        indices = self._check_concept_indices(concept_indices)
        self._check_sampling(num_inference_steps, eta, output_type)
        if not isinstance(pairwise, bool):
            raise TypeError(f"pairwise must be True or False, got {pairwise!r}")
        sources = self.preprocess(images, "images")
        references = self.preprocess(reference_images, "reference_images")
        num_sources, num_references = sources.shape[0], references.shape[0]
        self._check_generator(generator, num_sources)
        source_out, reference_out = self.concept_encoder(sources), self.concept_encoder(references)
        index = torch.tensor(indices, device=sources.device)
        if pairwise:
            if num_sources != num_references:
                raise ValueError(
                    f"pairwise swap needs as many reference_images as images, got {num_references} and {num_sources}: "
                    "pass batches of the same length, or pairwise=False for every image with every reference"
                )
            tokens = source_out.tokens.clone()
            tokens[:, index] = reference_out.tokens[:, index]
            concepts = source_out.concepts.clone()
            concepts[:, index] = reference_out.concepts[:, index]
            columns, header = 1, None
        else:
            # Swapping token k is swapping concept k: token k depends on concept k alone.
            tokens = source_out.tokens[:, None].repeat(1, num_references, 1, 1)
            tokens[:, :, index] = reference_out.tokens[None, :, index]
            concepts = source_out.concepts[:, None].repeat(1, num_references, 1)
            concepts[:, :, index] = reference_out.concepts[None, :, index]
            columns, header = num_references, references
        noise_index = torch.arange(num_sources, device=sources.device).repeat_interleave(columns)
        tokens = self._check_tokens(tokens.reshape(-1, *tokens.shape[-2:]))
        edited, grid = self._edit(tokens, noise_index, num_sources, columns, sources, header, num_inference_steps, eta, generator,
                                  output_type, latents)
        self.maybe_free_model_hooks()
        return self._edit_output(edited, grid, concepts.reshape(num_sources, columns, -1), return_dict)

    def _sweeps(self, values, concepts: torch.Tensor, indices: List[int]) -> torch.Tensor:
        """(len(indices), V) values to sweep each concept through; by default mean +- 2 std of the batch."""
        if values is None:
            if concepts.shape[0] < 2:
                raise ValueError("traverse needs values=... with a single image (the default range comes from the batch)")
            mean, std = concepts[:, indices].mean(0), concepts[:, indices].std(0)
            steps = torch.linspace(-2, 2, 8, device=concepts.device)
            return mean[:, None] + std[:, None] * steps[None]
        sweeps = _real_tensor(values, "values").to(device=concepts.device, dtype=concepts.dtype)
        sweeps = sweeps.reshape(1) if sweeps.ndim == 0 else sweeps
        if sweeps.ndim == 1:
            sweeps = sweeps[None].repeat(len(indices), 1)
        if sweeps.ndim != 2 or sweeps.shape[0] != len(indices) or sweeps.shape[1] == 0:
            raise ValueError(
                f"values must be a sequence of V numbers or a (number of concepts, V) table, got shape "
                f"{tuple(sweeps.shape)} for {len(indices)} concept(s): e.g. torch.linspace(-2, 2, 8)"
            )
        _check_finite(sweeps, "values")
        return sweeps

    @torch.no_grad()
    def traverse(
        self,
        images: ImageInput,
        concept_index: Union[int, Sequence[int]],
        values: Optional[Union[Sequence[float], torch.Tensor]] = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Generators = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Sweep one concept (or each of several) through `values` and decode.

        The grid has one row per (image, concept) pair, image-major, and one column per value.
        `values` is one sweep for every concept, or a `(len(concept_index), V)` table with a sweep per
        concept. Without `values`, each concept sweeps 8 values over its mean +- 2 standard deviations
        in this batch (which needs at least two images). Every row of one image starts from the same noise:
        drawn from `generator`, or `latents` `(len(images), C, h, w)` such as `pipe.invert(images).latents`.
        Returns a `ConceptEditOutput`, or the tuple `(images, grid, concepts)` with `return_dict=False`.

        Example:
            >>> out = pipe.traverse(image, concept_index=3, values=torch.linspace(-2, 2, 8))
            >>> out.grid.save("traversal.png")
        """
        indices = self._check_concept_indices(concept_index)
        self._check_sampling(num_inference_steps, eta, output_type)
        inputs = self.preprocess(images, "images")
        num_images = inputs.shape[0]
        self._check_generator(generator, num_images)
        concepts = self.concept_encoder(inputs).concepts
        sweeps = self._sweeps(values, concepts, indices)
        num_values = sweeps.shape[1]
        edited = concepts[:, None, None].repeat(1, len(indices), num_values, 1)  # (B, K, V, N)
        for k, index in enumerate(indices):
            edited[:, k, :, index] = sweeps[k]
        rows = num_images * len(indices)
        edited = edited.reshape(rows, num_values, -1)
        tokens = self._check_tokens(self.concepts_to_tokens(edited.reshape(rows * num_values, -1)))
        # The same noise for every row of one image: draw per image, then repeat per concept.
        noise_index = torch.arange(num_images, device=inputs.device).repeat_interleave(len(indices) * num_values)
        row_inputs = inputs.repeat_interleave(len(indices), dim=0)
        images_out, grid = self._edit(tokens, noise_index, rows, num_values, row_inputs, None, num_inference_steps, eta, generator,
                                      output_type, latents)
        self.maybe_free_model_hooks()
        return self._edit_output(images_out, grid, edited, return_dict)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = True, **kwargs):
        """Save in the Hub-portable layout: diffusers folders with safetensors weights, plus this
        module as `pipeline.py` and the encoder's module beside its weights.

        The folder loads with `concept_diffusion.ConceptDiffusionPipeline.from_pretrained(folder)`
        (the package's own classes, running none of the folder's code) and, without the package,
        with `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`. The save is atomic:
        the folder is written beside the target and renamed into place.
        """
        if not safe_serialization:
            raise ValueError("ConceptDiffusionPipeline saves safetensors only: drop safe_serialization=False")
        if kwargs.pop("push_to_hub", False):
            raise ValueError("use pipe.push_to_hub(repo_id) to upload: it adds the model card")
        save_directory = os.path.abspath(os.fspath(save_directory))
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".saving-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a saved model is an ordinary folder
        try:
            super().save_pretrained(staging, safe_serialization=True, **kwargs)
            # This module, not a subclass's: the remote code must import only torch and diffusers.
            shutil.copyfile(os.path.abspath(__file__), os.path.join(staging, PIPELINE_FILE))
            index_path = os.path.join(staging, "model_index.json")
            with open(index_path) as file:
                index = json.load(file)
            index["_class_name"] = [os.path.splitext(PIPELINE_FILE)[0], ConceptDiffusionPipeline.__name__]
            index["concept_encoder"] = ["concept_encoder", type(self.concept_encoder).__name__]
            if self.concept_prior is not None:
                index["concept_prior"] = ["concept_prior", type(self.concept_prior).__name__]
            with open(index_path, "w") as file:
                json.dump(index, file, indent=2, sort_keys=True)
                file.write("\n")
            _replace_directory(staging, save_directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ attention maps

    @property
    def attention_layers(self) -> List[str]:
        """Names of the UNet's cross-attention (`attn2`) layers, where the concept tokens enter, in module order."""
        return [key[: -len(".processor")] for key in self.unet.attn_processors if key.endswith(".attn2.processor")]

    @torch.no_grad()
    def attention_maps(
        self,
        images: ImageInput,
        num_inference_steps: int = 50,
        timesteps: Optional[Sequence[int]] = None,
        layers: Optional[Sequence[str]] = None,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
        return_dict: bool = False,
    ):
        """Where each concept token looks: cross-attention maps `(B, N, H, W)` at image resolution.

        The softmax of every `attn2` layer is recorded, averaged over heads, resized to the image
        (bilinear, which keeps the sum over concepts at 1) and averaged over layers and passes:
        - `timesteps=None`: over the `num_inference_steps` steps of a reconstruction of `images`,
          i.e. the attention while the model redraws the image from noise;
        - `timesteps=[t, ...]`: over one UNet pass per training timestep t on the image's own latents
          noised to t (the same noise for every t), i.e. the attention on the real image.
        At each position the maps sum to 1 over the N concepts. `layers` keeps only the layers whose
        name (see `attention_layers`) equals or starts with one of its entries, e.g. `["up_blocks"]`.
        The UNet's processors are restored afterwards, also on error.

        With `return_dict=True`, an `AttentionMapsOutput` also holds the maps per layer (averaged over
        passes), per pass (averaged over layers), the timesteps and the input images.

        Example:
            >>> maps = pipe.attention_maps(images, num_inference_steps=20)    # (B, N, H, W)
            >>> pipe.attention_grid(images, num_inference_steps=20).save("attention.png")
        """
        selected = self._select_attention_layers(layers)
        batch = self.preprocess(images)
        records = {name: [] for name in selected}
        originals = self.unet.attn_processors
        recording = {
            key: CrossAttentionRecorder(processor, records[key[: -len(".processor")]])
            if key[: -len(".processor")] in records else processor
            for key, processor in originals.items()
        }
        self.unet.set_attn_processor(recording)  # diffusers pops from the dict it is given
        try:
            if timesteps is None:
                self(images=images, num_inference_steps=num_inference_steps, eta=eta, generator=generator, output_type="np")
                passes = self.scheduler.timesteps.detach().cpu().clone()
            else:
                passes = self._noised_attention_passes(batch, timesteps, generator)
        finally:
            self.unet.set_attn_processor(dict(originals))
        layer_maps, step_maps = self._resize_attention(records, tuple(batch.shape[-2:]))
        maps = step_maps.mean(0)
        if not return_dict:
            return maps
        inputs = self.image_processor.postprocess(batch.float(), output_type="np")
        return AttentionMapsOutput(maps=maps, layer_maps=layer_maps, step_maps=step_maps, timesteps=passes, images=inputs)

    def _select_attention_layers(self, layers: Optional[Sequence[str]]) -> List[str]:
        available = self.attention_layers
        if not available:
            raise ValueError("this UNet has no cross-attention (attn2) layers, so the concept tokens have no attention maps")
        if layers is None:
            return available
        if isinstance(layers, str):
            layers = [layers]
        selected = [name for name in available if any(name == entry or name.startswith(entry + ".") for entry in layers)]
        if not selected:
            raise ValueError(f"layers {list(layers)} match no cross-attention layer: use names or prefixes of {available}")
        return selected

    def _noised_attention_passes(self, batch: torch.Tensor, timesteps: Sequence[int], generator) -> torch.Tensor:
        """One UNet pass per timestep on the images' latents noised to it; returns the timesteps."""
        num_train = self.scheduler.config.num_train_timesteps
        passes = torch.as_tensor(timesteps).reshape(-1)
        if passes.numel() == 0 or passes.is_floating_point() or passes.min() < 0 or passes.max() >= num_train:
            raise ValueError(f"timesteps must be integers in [0, {num_train}), got {list(timesteps)}: e.g. timesteps=[100, 300, 500]")
        tokens = self.concept_encoder(batch).tokens.to(self.unet.dtype)
        if self.vae is None:
            latents = batch.to(self.unet.dtype)
        else:
            encoded = self.vae.encode(batch.to(self.vae.dtype))
            latents = encoded.latents if hasattr(encoded, "latents") else encoded.latent_dist.mode()
            latents = (latents * self.vae.config.scaling_factor).to(self.unet.dtype)
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        for t in passes.tolist():
            t_batch = torch.full((latents.shape[0],), t, device=latents.device, dtype=torch.long)
            self.unet(self.scheduler.add_noise(latents, noise, t_batch), t_batch, **unet_condition(self.unet.config, tokens))
        return passes

    def _resize_attention(self, records: dict, size: tuple):
        """Recorded (B, h*w, N) softmaxes -> per-layer maps (B, N, H, W) and per-pass maps (S, B, N, H, W)."""
        _, latent_height, latent_width = self.latent_shape
        layer_maps, step_sum = {}, None
        for name, passes in records.items():
            recorded = torch.stack(passes).float()  # (S, B, h*w, N)
            num_steps, batch_size, positions, num_concepts = recorded.shape
            # A layer at 1/f of the latent grid sees (h/f) * (w/f) positions.
            factor = max(1, round((latent_height * latent_width / positions) ** 0.5))
            height, width = latent_height // factor, latent_width // factor
            if height * width != positions:
                raise RuntimeError(f"attention layer {name} has {positions} positions, not a grid of the {latent_height}x{latent_width} latents")
            grid = recorded.reshape(num_steps * batch_size, height, width, num_concepts).permute(0, 3, 1, 2)
            resized = torch.nn.functional.interpolate(grid, size=size, mode="bilinear", align_corners=False)
            resized = resized.reshape(num_steps, batch_size, num_concepts, *size)
            layer_maps[name] = resized.mean(0)
            step_sum = resized if step_sum is None else step_sum + resized
        return layer_maps, step_sum / len(records)

    def attention_grid(
        self,
        images: ImageInput,
        concept_labels: Optional[Sequence[str]] = None,
        tile_size: int = 128,
        alpha: float = 0.6,
        **kwargs,
    ) -> PIL.Image.Image:
        """A labelled grid: one row per image, the image first, then each concept's map over it.

        Every map of one image shares one colour scale (dark: no attention, bright: that image's
        strongest), so the brightest tile is the concept the region attends to most. `kwargs` go to
        `attention_maps` (`num_inference_steps`, `timesteps`, `layers`, `generator`, ...);
        `concept_labels` replace "concept i" in the column titles.

        Example:
            >>> pipe.attention_grid(images, timesteps=[200, 400, 600]).save("attention.png")
        """
        from PIL import ImageDraw, ImageFont

        out = self.attention_maps(images, return_dict=True, **kwargs)
        num_images, num_concepts = out.maps.shape[:2]
        labels = [f"concept {i}" for i in range(num_concepts)] if concept_labels is None else list(concept_labels)
        if len(labels) != num_concepts:
            raise ValueError(f"concept_labels has {len(labels)} entries for {num_concepts} concepts: give one label per concept")
        title_height = max(14, tile_size // 7)
        font = ImageFont.load_default(size=max(10, title_height - 4))
        grid = PIL.Image.new("RGB", ((num_concepts + 1) * tile_size, num_images * (tile_size + title_height)), "white")
        draw = ImageDraw.Draw(grid)
        for row in range(num_images):
            image = out.images[row]
            image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
            maps = out.maps[row].numpy()
            strength = maps / max(float(maps.max()), 1e-12)
            tiles = [image] + [(1 - alpha) * image + alpha * _heat_colours(strength[k]) for k in range(num_concepts)]
            top = row * (tile_size + title_height)
            for column, (tile, label) in enumerate(zip(tiles, ["image"] + labels)):
                picture = PIL.Image.fromarray((np.clip(tile, 0, 1) * 255).round().astype(np.uint8))
                grid.paste(picture.resize((tile_size, tile_size), PIL.Image.NEAREST), (column * tile_size, top + title_height))
                draw.text((column * tile_size + 3, top + 1), label, fill="black", font=font)
        return grid


@dataclass
class AttentionMapsOutput(BaseOutput):
    """Output of `ConceptDiffusionPipeline.attention_maps(..., return_dict=True)`.

    Args:
        maps: `(B, N, H, W)`, averaged over heads, layers and passes; sums to 1 over N.
        layer_maps: layer name -> `(B, N, H, W)`, averaged over heads and passes.
        step_maps: `(S, B, N, H, W)`, one per denoising step or timestep, averaged over heads and layers.
        timesteps: `(S,)`, the timestep of each pass.
        images: the input images as numpy `(B, H, W, C)` in [0, 1], to draw the maps over.
    """

    maps: torch.Tensor
    layer_maps: dict
    step_maps: torch.Tensor
    timesteps: torch.Tensor
    images: np.ndarray


class CrossAttentionRecorder:
    """Attention processor for one `attn2` layer: records the softmax over the concept tokens,
    averaged over heads, as `(B, h*w, N)`, and leaves the computation to the layer's own processor,
    so that outputs are unchanged bit for bit."""

    def __init__(self, processor, records: list):
        self.processor = processor
        self.records = records

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is None:
            raise ValueError("CrossAttentionRecorder belongs on cross-attention (attn2) layers, which receive the concept tokens")
        queries = hidden_states
        if attn.spatial_norm is not None:
            queries = attn.spatial_norm(queries, temb)
        if queries.ndim == 4:
            queries = queries.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            queries = attn.group_norm(queries.transpose(1, 2)).transpose(1, 2)
        context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        batch_size, num_tokens = context.shape[:2]
        mask = attn.prepare_attention_mask(attention_mask, num_tokens, batch_size)
        query = attn.head_to_batch_dim(attn.to_q(queries))
        key = attn.head_to_batch_dim(attn.to_k(context))
        probabilities = attn.get_attention_scores(query, key, mask)  # (B * heads, h*w, N)
        self.records.append(probabilities.reshape(batch_size, attn.heads, *probabilities.shape[1:]).mean(1).detach())
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


# Anchors of the "inferno" colour map: dark for no attention, bright yellow for the most.
_HEAT_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32) / 255


def _heat_colours(values: np.ndarray) -> np.ndarray:
    """Values (H, W) in [0, 1] -> RGB (H, W, 3) in [0, 1]."""
    positions = np.linspace(0, 1, len(_HEAT_ANCHORS))
    return np.stack([np.interp(values, positions, _HEAT_ANCHORS[:, c]) for c in range(3)], axis=-1)


def _replace_directory(source: str, target: str) -> None:
    """Move the finished folder `source` to `target`, replacing a previous save only once the new one is whole."""
    if not os.path.exists(target):
        os.replace(source, target)
        return
    if not os.path.isdir(target):
        raise FileExistsError(f"{target} exists and is not a folder: choose another save_directory")
    backup = tempfile.mkdtemp(prefix=".replaced-", dir=os.path.dirname(target))
    os.rmdir(backup)
    os.replace(target, backup)
    os.replace(source, target)
    shutil.rmtree(backup, ignore_errors=True)
