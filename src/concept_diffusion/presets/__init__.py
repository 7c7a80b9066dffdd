"""Architecture presets: diffusers folders without weights (model_index.json + each component's config).

They live in `configs/` beside this file; the repository's top-level `pipelines/` points there.

- `tiny`: for tests; 32x32 RGB, a tiny VQ first stage, 4 concepts. A 2-step reconstruction takes milliseconds.
- `cpu`: small and fast enough to train on 2 CPU cores; 32x32 RGB in pixel space, 10 concepts.
- `shapes3d`, `mpi3d`, `cars3d`: the released EncDiff code's sizes; 64x64 RGB, VQ 16x16x3 latents,
  UNet with model_channels 64 and channel_mult (1, 2, 4, 4), 20 concepts of width 16.
"""

import json
import os
from importlib import resources
from typing import List, Optional, Union

import torch

CONFIGS = resources.files(__name__) / "configs"


def list_presets() -> List[str]:
    """Names of the packaged presets, e.g. `["cars3d", "cpu", "mpi3d", "shapes3d", "tiny"]`."""
    return sorted(entry.name for entry in CONFIGS.iterdir() if (entry / "model_index.json").is_file())


def preset_folder(name_or_folder: Union[str, os.PathLike]) -> str:
    """The folder of a preset name, or `name_or_folder` itself when it is a folder."""
    path = os.fspath(name_or_folder)
    if path in list_presets():
        return str(CONFIGS / path)
    if os.path.isdir(path):
        return path
    raise ValueError(f"unknown preset {path!r}: use one of {list_presets()} or a folder with model_index.json")


def build_pipeline(name_or_folder: Union[str, os.PathLike] = "tiny", seed: Optional[int] = 0, conditioning: str = "cross_attention",
                   token_mode: Optional[str] = None):
    """Build an untrained `ConceptDiffusionPipeline` from a preset name or a diffusers folder of configs.

    Weights are initialised under `torch.manual_seed(seed)` (without touching the global RNG), so
    the same seed builds the same pipeline. The models are returned in eval mode.
    `conditioning="adagn"` builds the paper's control instead: the tokens enter through the UNet's
    time embedding (`models.conditioning.adagn_unet_config`), not through cross-attention. `token_mode`
    replaces the preset encoder's ("scalar", "angle" or "vector"; None keeps it).

    Example:
        >>> pipe = build_pipeline("tiny")
        >>> out = pipe(images=np.random.rand(2, 32, 32, 3), num_inference_steps=2, output_type="np")
    """
    from concept_diffusion.hub.loading import component_classes, read_model_index
    from concept_diffusion.models.conditioning import CONDITIONINGS, adagn_unet_config
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    folder = preset_folder(name_or_folder)
    classes = component_classes(read_model_index(folder), folder)
    components = {}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for name, component_class in sorted(classes.items()):
            if component_class is None:
                components[name] = None
                continue
            config_path = os.path.join(folder, name, "scheduler_config.json" if name == "scheduler" else "config.json")
            if not os.path.isfile(config_path):
                raise FileNotFoundError(f"{folder}: component {name!r} has no config at {config_path}")
            with open(config_path) as file:
                config = json.load(file)
            if name == "concept_encoder" and token_mode is not None:
                config = {**config, "token_mode": token_mode}
            if name == "unet" and conditioning == "adagn":  # built after concept_encoder (sorted order)
                encoder = components["concept_encoder"].config
                config = adagn_unet_config(config, encoder.num_concepts, encoder.token_dim)
            component = component_class.from_config(config)
            if isinstance(component, torch.nn.Module):
                component.eval()
            components[name] = component
    return ConceptDiffusionPipeline(**components)
