"""ConceptDiffusionPipeline: encode images to concepts, decode (edited) concepts back to images.

This file imports only torch, diffusers (and what diffusers itself depends on: numpy, PIL,
huggingface_hub) and the standard library: `save_pretrained` copies it into Hub repos as
`pipeline.py`, so that users without concept-diffusion can load a pipeline with
`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`.
"""

import importlib
import inspect
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput, make_image_grid
from diffusers.utils.torch_utils import randn_tensor

ImageInput = Union[PIL.Image.Image, np.ndarray, torch.Tensor, List[PIL.Image.Image], List[np.ndarray], List[torch.Tensor]]

# What a saved pipeline's model_index.json says, so that plain diffusers finds the remote code:
# `pipeline.py` at the root and `concept_encoder/concept_encoder.py` beside the encoder weights.
PIPELINE_FILE = "pipeline.py"
ENCODER_FILE = "concept_encoder.py"
REQUIRED_COMPONENTS = ("concept_encoder", "unet", "scheduler")
VAE_CLASSES = ("VQModel", "AutoencoderKL")
# What from_pretrained downloads from a Hub repo: never pickled weights.
REPO_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.png", "*.txt"]


@dataclass
class ConceptDiffusionPipelineOutput(BaseOutput):
    """Output of `ConceptDiffusionPipeline.__call__`.

    Args:
        images: decoded images: a list of PIL images, a numpy array (B, H, W, C) in [0, 1], or a
            tensor (B, C, H, W) in [0, 1], following `output_type`.
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
            the references in the first row), ready to save.
        concepts: the edited concepts, `(rows, columns, N)`.
    """

    images: Union[List[List[PIL.Image.Image]], np.ndarray, torch.Tensor]
    grid: PIL.Image.Image
    concepts: torch.Tensor


class ConceptDiffusionPipeline(DiffusionPipeline):
    r"""EncDiff: a concept encoder whose N concept tokens condition a diffusion UNet through cross-attention.

    Components:
        concept_encoder: a `ConceptEncoder`; images -> concepts (B, N) -> tokens (B, N, d).
        unet: a `UNet2DConditionModel` with `cross_attention_dim == d`, denoising latents (or pixels).
        scheduler: any diffusers scheduler; DDIM for sampling by default.
        vae: a `VQModel` or `AutoencoderKL` first stage, or None for diffusion in pixel space.

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
    _optional_components = ["vae"]

    def __init__(self, concept_encoder, unet, scheduler, vae=None):
        super().__init__()
        token_dim = concept_encoder.config.token_dim
        if unet.config.cross_attention_dim != token_dim:
            raise ValueError(
                f"unet.config.cross_attention_dim ({unet.config.cross_attention_dim}) must equal the concept "
                f"encoder's token_dim ({token_dim}): build the UNet with cross_attention_dim={token_dim}"
            )
        self.register_modules(concept_encoder=concept_encoder, unet=unet, scheduler=scheduler, vae=vae)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    # ------------------------------------------------------------------ inputs

    def preprocess(self, images: ImageInput, name: str = "images") -> torch.Tensor:
        """Turn PIL images, numpy arrays (H, W, C) in [0, 1] or tensors (B, C, H, W) in [-1, 1] into a
        checked batch `(B, C, H, W)` in [-1, 1] on the encoder's device and dtype."""
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError(f"{name} is an empty list: pass at least one image")
            if all(isinstance(image, PIL.Image.Image) for image in images):
                arrays = [self._pil_to_array(image, name) for image in images]
                batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * 2 - 1
            elif all(isinstance(image, np.ndarray) for image in images):
                return self.preprocess(np.stack(images), name)
            elif all(isinstance(image, torch.Tensor) for image in images):
                return self.preprocess(torch.stack(images), name)
            else:
                raise ValueError(f"{name} mixes types: pass a list of PIL images, of numpy arrays or of tensors")
        elif isinstance(images, PIL.Image.Image):
            return self.preprocess([images], name)
        elif isinstance(images, np.ndarray):
            array = images[None] if images.ndim == 3 else images
            if array.ndim != 4:
                raise ValueError(f"{name} as a numpy array must be (H, W, C) or (B, H, W, C), got shape {images.shape}")
            if array.dtype == np.uint8:
                array = array.astype(np.float32) / 255.0
            array = array.astype(np.float32)
            self._check_range(array, 0.0, 1.0, name, "numpy arrays take values in [0, 1] (tensors take [-1, 1])")
            batch = torch.from_numpy(array).permute(0, 3, 1, 2) * 2 - 1
        elif isinstance(images, torch.Tensor):
            batch = images[None] if images.ndim == 3 else images
            batch = batch.float()
            self._check_range(batch, -1.0, 1.0, name, "tensors take values in [-1, 1] (numpy arrays take [0, 1])")
        else:
            raise ValueError(
                f"{name} must be PIL images, numpy arrays (H, W, C) in [0, 1] or tensors (B, C, H, W) in [-1, 1], "
                f"got {type(images).__name__}"
            )
        self.concept_encoder.check_images(batch, name)
        return batch.to(device=self._execution_device, dtype=self.concept_encoder.dtype)

    def _pil_to_array(self, image: PIL.Image.Image, name: str) -> np.ndarray:
        channels = self.concept_encoder.config.in_channels
        expected_mode = {1: "L", 3: "RGB"}.get(channels)
        if expected_mode is not None and image.mode != expected_mode:
            raise ValueError(
                f"{name} must be {expected_mode} images ({channels} channels), got mode {image.mode!r}: "
                f"convert with image.convert({expected_mode!r})"
            )
        array = np.asarray(image, dtype=np.float32) / 255.0
        return array[..., None] if array.ndim == 2 else array

    @staticmethod
    def _check_range(values, low: float, high: float, name: str, hint: str) -> None:
        finite = np.isfinite(values).all() if isinstance(values, np.ndarray) else torch.isfinite(values).all()
        if not finite:
            raise ValueError(f"{name} contain NaN or infinite values: clean or drop those images")
        tolerance = 1e-3
        if values.min() < low - tolerance or values.max() > high + tolerance:
            raise ValueError(
                f"{name} have values in [{float(values.min()):.3g}, {float(values.max()):.3g}], expected [{low:g}, {high:g}]: {hint}"
            )

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        config = self.concept_encoder.config
        expected = (config.num_concepts, config.token_dim)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected:
            raise ValueError(
                f"tokens must have shape (batch, {expected[0]}, {expected[1]}), got {tuple(tokens.shape)}: "
                "pass tokens as returned by concept_encoder(images).tokens"
            )
        if not torch.isfinite(tokens).all():
            raise ValueError("tokens contain NaN or infinite values")
        return tokens.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_concept_indices(self, concept_indices) -> List[int]:
        indices = [concept_indices] if isinstance(concept_indices, int) else list(concept_indices)
        num_concepts = self.concept_encoder.config.num_concepts
        if not indices:
            raise ValueError("concept_indices is empty: name at least one concept, e.g. concept_indices=[0]")
        for index in indices:
            if not isinstance(index, (int, np.integer)) or not 0 <= index < num_concepts:
                raise ValueError(
                    f"concept index {index!r} is out of range: this model has {num_concepts} concepts, "
                    f"indices 0..{num_concepts - 1}"
                )
        return [int(index) for index in indices]

    # ------------------------------------------------------------------ encoding

    @torch.no_grad()
    def encode(self, images: ImageInput, return_tokens: bool = False):
        """Encode images to their concepts `(B, N)` (and tokens `(B, N, d)` if `return_tokens`).

        Example:
            >>> concepts = pipe.encode(np.random.rand(4, 64, 64, 3))   # (4, 20)
        """
        output = self.concept_encoder(self.preprocess(images))
        if return_tokens:
            return output.concepts, output.tokens
        return output.concepts

    def concepts_to_tokens(self, concepts: torch.Tensor) -> torch.Tensor:
        """Map (edited) concepts `(B, N)` to the UNet's condition tokens `(B, N, d)`."""
        if not isinstance(concepts, torch.Tensor):
            concepts = torch.as_tensor(np.asarray(concepts), dtype=torch.float32)
        if not torch.isfinite(concepts).all():
            raise ValueError("concepts contain NaN or infinite values")
        return self.concept_encoder.concepts_to_tokens(concepts.to(self._execution_device))

    # ------------------------------------------------------------------ sampling

    @property
    def latent_shape(self):
        """(channels, height, width) of what the UNet denoises: vae latents, or pixels without a vae."""
        config = self.unet.config
        size = config.sample_size if isinstance(config.sample_size, int) else tuple(config.sample_size)[0]
        return (config.in_channels, size, size)

    def _denoise(
        self,
        tokens: torch.Tensor,
        noise_index: torch.Tensor,
        num_inference_steps: int,
        eta: float,
        generator,
        latents: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Run the reverse process for `tokens` (B, N, d). Row b starts from noise `noise_index[b]`,
        so rows that share an index differ only by their tokens."""
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        device, dtype = self._execution_device, self.unet.dtype
        num_noises = int(noise_index.max()) + 1
        shape = (num_noises, *self.latent_shape)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype)[noise_index] * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        # Schedulers differ in what step() takes; a stochastic DDIM step gets the per-step noise
        # drawn here, shared like the starting noise, instead of drawing it per row itself.
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        step_kwargs = {"eta": eta} if "eta" in accepted else {}
        share_step_noise = eta > 0 and "variance_noise" in accepted
        if not share_step_noise and "generator" in accepted:
            step_kwargs["generator"] = generator
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=tokens).sample
            if share_step_noise:
                step_kwargs["variance_noise"] = randn_tensor(shape, generator=generator, device=device, dtype=dtype)[noise_index]
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
        return latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (or pixels in pixel space) -> images `(B, C, H, W)` in [-1, 1]."""
        if self.vae is None:
            return latents.clamp(-1, 1)
        latents = latents / self.vae.config.scaling_factor
        return self.vae.decode(latents.to(self.vae.dtype)).sample.clamp(-1, 1)

    def _postprocess(self, images: torch.Tensor, output_type: str):
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        return self.image_processor.postprocess(images.float(), output_type=output_type)

    @torch.no_grad()
    def __call__(
        self,
        images: Optional[ImageInput] = None,
        concepts: Optional[torch.Tensor] = None,
        tokens: Optional[torch.Tensor] = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Reconstruct `images`, or decode given (possibly edited) `concepts` or `tokens`. Give exactly one.

        Args:
            images: PIL images, numpy (H, W, C) in [0, 1] or tensors (B, C, H, W) in [-1, 1].
            concepts: `(B, N)`, e.g. `pipe.encode(images)` with some entries changed.
            tokens: `(B, N, d)`, e.g. in "vector" token mode.
            num_inference_steps: denoising steps of the scheduler.
            eta: DDIM's eta (0 = deterministic sampling).
            generator: for the starting noise; the same generator state gives the same output.
            latents: starting noise `(B, C, h, w)` instead of drawing it.
            output_type: "pil", "np" or "pt".

        Example:
            >>> out = pipe(images=images, num_inference_steps=20, generator=torch.Generator().manual_seed(0))
            >>> out.images[0].save("reconstruction.png")
        """
        given = [name for name, value in (("images", images), ("concepts", concepts), ("tokens", tokens)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"pass exactly one of images, concepts or tokens; got {given or 'none'}")
        if images is not None:
            concepts, tokens = self.encode(images, return_tokens=True)
        elif concepts is not None:
            tokens = self.concepts_to_tokens(concepts)
        tokens = self._check_tokens(tokens)
        noise_index = torch.arange(tokens.shape[0], device=tokens.device)
        decoded = self.decode_latents(self._denoise(tokens, noise_index, num_inference_steps, eta, generator, latents))
        result = self._postprocess(decoded, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result, concepts)
        return ConceptDiffusionPipelineOutput(images=result, concepts=concepts)

    # ------------------------------------------------------------------ editing

    def _edit(self, tokens, noise_index, rows, columns, inputs, header, num_inference_steps, eta, generator, output_type):
        decoded = self.decode_latents(self._denoise(tokens, noise_index, num_inference_steps, eta, generator, None))
        tiles = self._postprocess(decoded, "pil")
        input_tiles = self._postprocess(inputs, "pil")
        grid_tiles = []
        if header is not None:
            grid_tiles += [PIL.Image.new(tiles[0].mode, tiles[0].size, color=0)] + self._postprocess(header, "pil")
        for row in range(rows):
            grid_tiles += [input_tiles[row]] + tiles[row * columns : (row + 1) * columns]
        grid = make_image_grid(grid_tiles, rows=rows + (header is not None), cols=columns + 1)
        if output_type == "pil":
            images = [tiles[row * columns : (row + 1) * columns] for row in range(rows)]
        else:
            flat = self._postprocess(decoded, output_type)
            images = flat.reshape(rows, columns, *flat.shape[1:])
        return images, grid

    @torch.no_grad()
    def swap(
        self,
        images: ImageInput,
        reference_images: ImageInput,
        concept_indices: Union[int, Sequence[int]],
        pairwise: bool = False,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        output_type: str = "pil",
    ) -> ConceptEditOutput:
        """Copy the chosen concepts of each reference into each image and decode.

        The result is a grid: row i is image i, column j holds image i with the concepts
        `concept_indices` of reference j. With `pairwise=True`, image i only receives reference i's
        concepts (one column; both batches must have the same length). Each row starts from the
        same noise, so the swapped concepts are the only difference within a row.

        Example:
            >>> out = pipe.swap(images[:4], images[4:8], concept_indices=[2])
            >>> out.grid.save("swap.png")      # first row: references, first column: inputs
        """
        indices = self._check_concept_indices(concept_indices)
        sources = self.preprocess(images, "images")
        references = self.preprocess(reference_images, "reference_images")
        source_out, reference_out = self.concept_encoder(sources), self.concept_encoder(references)
        num_sources, num_references = sources.shape[0], references.shape[0]
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
        edited, grid = self._edit(tokens, noise_index, num_sources, columns, sources, header, num_inference_steps, eta, generator, output_type)
        self.maybe_free_model_hooks()
        return ConceptEditOutput(images=edited, grid=grid, concepts=concepts.reshape(num_sources, columns, -1))

    @torch.no_grad()
    def traverse(
        self,
        images: ImageInput,
        concept_index: Union[int, Sequence[int]],
        values: Optional[Union[Sequence[float], torch.Tensor]] = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        output_type: str = "pil",
    ) -> ConceptEditOutput:
        """Sweep one concept (or each of several) through `values` and decode.

        The grid has one row per (image, concept) pair, image-major, and one column per value.
        `values` is one sweep for every concept, or a `(len(concept_index), V)` table with a sweep per
        concept. Without `values`, each concept sweeps 8 values over its mean +- 2 standard deviations
        in this batch (which needs at least two images).

        Example:
            >>> out = pipe.traverse(image, concept_index=3, values=torch.linspace(-2, 2, 8))
            >>> out.grid.save("traversal.png")
        """
        indices = self._check_concept_indices(concept_index)
        inputs = self.preprocess(images, "images")
        concepts = self.concept_encoder(inputs).concepts
        num_images = concepts.shape[0]
        if values is None:
            if num_images < 2:
                raise ValueError("traverse needs values=... with a single image (the default range comes from the batch)")
            mean, std = concepts[:, indices].mean(0), concepts[:, indices].std(0)
            steps = torch.linspace(-2, 2, 8, device=concepts.device)
            sweeps = mean[:, None] + std[:, None] * steps[None]  # (K, V)
        else:
            sweeps = torch.as_tensor(values, dtype=concepts.dtype, device=concepts.device)
            if sweeps.ndim == 1:
                sweeps = sweeps[None].repeat(len(indices), 1)
            if sweeps.ndim != 2 or sweeps.shape[0] != len(indices) or sweeps.shape[1] == 0:
                raise ValueError(
                    f"values must be a sequence of V numbers or a (number of concepts, V) table, got shape "
                    f"{tuple(sweeps.shape)} for {len(indices)} concept(s): e.g. torch.linspace(-2, 2, 8)"
                )
            if not torch.isfinite(sweeps).all():
                raise ValueError("values contain NaN or infinite numbers")
        num_values = sweeps.shape[1]
        edited = concepts[:, None, None].repeat(1, len(indices), num_values, 1)  # (B, K, V, N)
        for k, index in enumerate(indices):
            edited[:, k, :, index] = sweeps[k]
        rows = num_images * len(indices)
        edited = edited.reshape(rows, num_values, -1)
        tokens = self._check_tokens(self.concepts_to_tokens(edited.reshape(rows * num_values, -1)))
        noise_index = torch.arange(num_images, device=inputs.device).repeat_interleave(len(indices) * num_values)
        row_inputs = inputs.repeat_interleave(len(indices), dim=0)
        # The same noise for every row of one image: draw per image, then repeat per concept.
        images_out, grid = self._edit(tokens, noise_index, rows, num_values, row_inputs, None, num_inference_steps, eta, generator, output_type)
        self.maybe_free_model_hooks()
        return ConceptEditOutput(images=images_out, grid=grid, concepts=edited)

    # ------------------------------------------------------------------ saving and loading

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = True, **kwargs):
        """Save in the Hub-portable layout: diffusers folders with safetensors weights, plus this
        module as `pipeline.py` and the encoder's module beside its weights.

        The folder loads with `ConceptDiffusionPipeline.from_pretrained(folder)` (the package's own
        classes) and, without the package, with
        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`. The save is atomic: the
        folder is written beside the target and renamed into place.
        """
        if not safe_serialization:
            raise ValueError("ConceptDiffusionPipeline saves safetensors only: drop safe_serialization=False")
        if kwargs.pop("push_to_hub", False):
            raise ValueError("use pipe.push_to_hub(repo_id) to upload: it adds the model card")
        save_directory = os.path.abspath(os.fspath(save_directory))
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".saving-", dir=parent)
        try:
            super().save_pretrained(staging, safe_serialization=True, **kwargs)
            shutil.copyfile(inspect.getsourcefile(type(self)), os.path.join(staging, PIPELINE_FILE))
            index_path = os.path.join(staging, "model_index.json")
            with open(index_path) as file:
                index = json.load(file)
            index["_class_name"] = ["pipeline", type(self).__name__]
            index["concept_encoder"] = ["concept_encoder", type(self.concept_encoder).__name__]
            with open(index_path, "w") as file:
                json.dump(index, file, indent=2, sort_keys=True)
                file.write("\n")
            _replace_directory(staging, save_directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs):
        """Load from a local folder or a Hub repo id, always with the package's own classes.

        The folder's `pipeline.py` and `concept_encoder.py` are never executed; only safetensors
        weights are read. Components passed as keyword arguments replace the saved ones (e.g.
        `scheduler=DDPMScheduler.from_config(...)`). Hub options: `revision`, `token`, `cache_dir`,
        `local_files_only`; `torch_dtype` sets the models' dtype.

        Without concept-diffusion installed (running as a repo's remote code), this falls back to
        diffusers' own loading.
        """
        try:
            encoder_module = importlib.import_module("concept_diffusion.models.concept_encoder")
        except ImportError:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        hub_kwargs = {key: kwargs.pop(key) for key in ("revision", "token", "cache_dir", "local_files_only") if key in kwargs}
        torch_dtype = kwargs.pop("torch_dtype", None)
        components = {name: kwargs.pop(name) for name in (*REQUIRED_COMPONENTS, "vae") if name in kwargs}
        if kwargs:
            raise ValueError(f"unexpected arguments to from_pretrained: {sorted(kwargs)}")
        folder = _resolve_folder(os.fspath(pretrained_model_name_or_path), hub_kwargs)
        index = _read_model_index(folder)

        import diffusers

        model_kwargs = {"use_safetensors": True}
        if torch_dtype is not None:
            model_kwargs["torch_dtype"] = torch_dtype
        for name, entry in index.items():
            if name.startswith("_") or name in components:
                continue
            class_name = entry[1] if isinstance(entry, (list, tuple)) else None
            if class_name is None:
                components[name] = None
                continue
            subfolder = os.path.join(folder, name)
            if not os.path.isdir(subfolder):
                raise FileNotFoundError(
                    f"{folder} lists the component {name!r} in model_index.json but has no {name}/ folder: "
                    "the pipeline was saved incompletely; save it again with pipe.save_pretrained(folder)"
                )
            if name == "concept_encoder":
                component_class = encoder_module.ConceptEncoder
            elif name == "scheduler":
                component_class = getattr(diffusers, class_name, None)
                if component_class is None or not issubclass(component_class, diffusers.SchedulerMixin):
                    raise ValueError(f"{folder}: scheduler class {class_name!r} is not a diffusers scheduler")
                components[name] = component_class.from_pretrained(subfolder)
                continue
            elif name == "unet" and class_name == "UNet2DConditionModel":
                component_class = diffusers.UNet2DConditionModel
            elif name == "vae" and class_name in VAE_CLASSES:
                component_class = getattr(diffusers, class_name)
            else:
                raise ValueError(f"{folder}: component {name!r} has class {class_name!r}, which a ConceptDiffusionPipeline cannot use")
            _check_safetensors(subfolder, name)
            components[name] = component_class.from_pretrained(subfolder, **model_kwargs)
        return cls(**components)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the portable layout, the weights and a model card in one commit; see `concept_diffusion.hub`."""
        try:  # a string import: diffusers scans remote code for `import` lines and would warn
            hub = importlib.import_module("concept_diffusion.hub")
        except ImportError:  # running as a Hub repo's remote code, without the package
            return super().push_to_hub(repo_id, **kwargs)
        return hub.push_pipeline_to_hub(self, repo_id, **kwargs)

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
            self.unet(self.scheduler.add_noise(latents, noise, t_batch), t_batch, encoder_hidden_states=tokens)
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


def _resolve_folder(path: str, hub_kwargs: dict) -> str:
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        return expanded
    if not REPO_ID_PATTERN.fullmatch(path):
        raise FileNotFoundError(
            f"{path} is not a folder, and not a Hub repo id of the form 'user/name': pass the folder written by "
            "save_pretrained, or a repo id"
        )
    # Checks the repo first (a concept-diffusion pipeline with safetensors weights) and explains
    # Hub failures; only configs, safetensors, code, the card and images are downloaded.
    return importlib.import_module("concept_diffusion.hub.pull").snapshot_pipeline(path, **hub_kwargs)


def _read_model_index(folder: str) -> dict:
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(
            f"{folder} is not a diffusers pipeline: it has no model_index.json. Pass the folder written by "
            "ConceptDiffusionPipeline.save_pretrained (or build one with concept_diffusion.build_pipeline)"
        )
    with open(index_path) as file:
        index = json.load(file)
    class_name = index.get("_class_name")
    if isinstance(class_name, (list, tuple)):
        class_name = class_name[-1]
    if class_name != "ConceptDiffusionPipeline":
        raise ValueError(
            f"{folder} holds a {class_name!r} pipeline, not a ConceptDiffusionPipeline: load it with "
            "diffusers.DiffusionPipeline.from_pretrained instead"
        )
    missing = [name for name in REQUIRED_COMPONENTS if not isinstance(index.get(name), (list, tuple)) or index[name][1] is None]
    if missing:
        raise ValueError(f"{folder}/model_index.json lacks the component(s) {missing}: a ConceptDiffusionPipeline needs {list(REQUIRED_COMPONENTS)}")
    return index


def _check_safetensors(subfolder: str, name: str) -> None:
    files = os.listdir(subfolder)
    if any(file.endswith(".safetensors") for file in files):
        return
    pickled = [file for file in files if file.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if pickled:
        raise ValueError(
            f"{subfolder} has only pickled weights ({', '.join(sorted(pickled))}); concept-diffusion loads safetensors "
            f"only, because unpickling runs arbitrary code. Convert the {name} weights to safetensors "
            "(load them yourself from a source you trust, then save_pretrained)"
        )
    raise FileNotFoundError(f"{subfolder} has no weights for the {name}: expected a .safetensors file")
