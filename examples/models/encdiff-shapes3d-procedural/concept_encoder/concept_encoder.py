"""The EncDiff concept encoder: images -> N scalar concepts -> N concept tokens.

This file imports only torch, diffusers and the standard library: `save_pretrained` copies it
into Hub repos as remote code, so that users without concept-diffusion can load the model with
`trust_remote_code=True`.
"""

import math
import os
import shutil
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn
from torch.nn import functional as F

TOKEN_MODES = ("scalar", "angle", "vector")
# The file name of this module's copy beside saved weights, as config.json's auto_map names it.
CODE_MODULE = "concept_encoder"


@dataclass
class ConceptEncoderOutput(BaseOutput):
    """Output of `ConceptEncoder.forward`.

    Args:
        concepts: `(batch, num_concepts)`. In "scalar" mode, the N scalars the paper calls concepts
            (the representation that disentanglement metrics score). In "angle" mode, N angles in
            (-pi, pi], each a point on a circle, scored the same way. In "vector" mode, each token's
            mean over its `token_dim` entries: a scalar summary per token, for metrics and plots.
        tokens: `(batch, num_concepts, token_dim)`, the cross-attention context of the UNet.
    """

    concepts: torch.Tensor
    # A default, as diffusers' outputs give their later fields: accelerate rebuilds outputs from a dict
    # (`type(output)({...})`) when it casts them back to float32 under mixed precision.
    tokens: torch.Tensor = None


class ResidualBlock(nn.Module):
    """ReLU -> 3x3 conv -> BatchNorm -> ReLU -> 1x1 conv, added to the input (the released `EncResBlock`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class ConceptTokenMLPs(nn.Module):
    """N independent MLPs (in_features -> 64 -> 128 -> token_dim, ELU), one per concept, computed together.

    The weights of all N MLPs are stacked along a leading concept axis, so one einsum per layer
    replaces a Python loop over N modules. Each MLP is initialised like `nn.Linear`. The input is
    `(B, N)` scalars (in_features 1) or `(B, N, in_features)`.
    """

    def __init__(self, num_concepts: int, token_dim: int, hidden_dims: tuple = (64, 128), in_features: int = 1):
        super().__init__()
        dims = (in_features, *hidden_dims, token_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(num_concepts, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_concepts, fan_out).uniform_(-bound, bound)))

    def forward(self, concepts: torch.Tensor) -> torch.Tensor:
        hidden = concepts.unsqueeze(-1) if concepts.ndim == 2 else concepts  # (B, N, in_features)
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.einsum("bni,nio->bno", hidden, weight) + bias
            if layer < last:
                hidden = F.elu(hidden)
        return hidden


def released_backbone(in_channels: int, width: int) -> nn.Sequential:
    """The released Encoder4's convolutional trunk, layer for layer (7 BatchNorms, no ReLU before the Linear).

    Four 4x4 stride-2 convolutions, each followed by BatchNorm; the third has no ReLU after it.
    Then a residual block, BatchNorm and ReLU, a second residual block, and the flattened features.
    """

    def down(channels_in: int, relu: bool) -> list:
        layers = [nn.Conv2d(channels_in, width, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(width)]
        return layers + [nn.ReLU()] if relu else layers

    return nn.Sequential(
        *down(in_channels, relu=True),
        *down(width, relu=True),
        *down(width, relu=False),
        *down(width, relu=True),
        ResidualBlock(width),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        ResidualBlock(width),
        nn.Flatten(),
    )


class ConceptEncoder(ModelMixin, ConfigMixin):
    r"""Maps images to N concepts and their N concept tokens (EncDiff, Yang et al., NeurIPS 2024).

    The backbone is the released code's Encoder4, layer for layer (`released_backbone`): four 4x4
    stride-2 convolutions with BatchNorm, two residual blocks with BatchNorm inside, then a linear
    layer. In "scalar" mode (the paper's default) the linear
    layer gives N scalars and each goes through its own MLP to a token of width `token_dim`. In
    "angle" mode each concept is a point on a circle: the linear layer gives N planar vectors, a
    concept is its vector's angle, and its MLP reads the unit vector (cos, sin). One angle holds a
    cyclic factor such as a hue, which a scalar can only hold by folding it over two concepts; a
    factor on a line takes an arc. Not in the paper. In "vector" mode (EncDiff-V) the linear layer
    gives the N tokens directly.

    Args:
        in_channels: channels of the input images.
        sample_size: height and width of the input images; a multiple of 16 (32, 64, 128, ...).
        num_concepts: N, the number of concepts and tokens.
        token_dim: d, the width of each token; the UNet's `cross_attention_dim` must equal it.
        width: channels of the convolutional backbone.
        token_mode: "scalar", "angle" or "vector".

    Example:
        >>> encoder = ConceptEncoder(sample_size=64, num_concepts=20, token_dim=16)
        >>> out = encoder(torch.zeros(2, 3, 64, 64))
        >>> out.concepts.shape, out.tokens.shape
        (torch.Size([2, 20]), torch.Size([2, 20, 16]))
    """

    # diffusers writes `"auto_map": {"AutoModel": "concept_encoder.ConceptEncoder"}` into config.json,
    # naming the copy of this module that save_pretrained puts beside the weights.
    _auto_class = "AutoModel"

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        """diffusers' config reading, without the `auto_map` entry that diffusers itself writes for remote code
        (`_auto_class`): `__init__` does not take it, and diffusers would warn about it on every load. Saving
        writes it again."""
        config_dict = {key: value for key, value in config_dict.items() if key != "auto_map"}
        return super().extract_init_dict(config_dict, **kwargs)

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 64,
        num_concepts: int = 20,
        token_dim: int = 16,
        width: int = 128,
        token_mode: str = "scalar",
    ):
        super().__init__()
        if token_mode not in TOKEN_MODES:
            raise ValueError(f"token_mode must be one of {TOKEN_MODES}, got {token_mode!r}")
        if sample_size % 16 != 0 or sample_size < 16:
            raise ValueError(
                f"sample_size must be a multiple of 16 (the backbone halves it four times), got {sample_size}: "
                "use 32, 64 or 128, or resize the images"
            )
        self.backbone = released_backbone(in_channels, width)
        features = width * (sample_size // 16) ** 2
        if token_mode == "vector":
            self.to_tokens = nn.Linear(features, num_concepts * token_dim)
        else:
            planes = 2 if token_mode == "angle" else 1
            self.to_concepts = nn.Linear(features, num_concepts * planes)
            self.token_mlps = ConceptTokenMLPs(num_concepts, token_dim, in_features=planes)

    def check_images(self, images: torch.Tensor, name: str = "images") -> None:
        """Raise a ValueError naming `name` if `images` is not a (B >= 1, C, H, W) batch this encoder takes.

        Only shapes are checked: a check of the values (NaN, range) would make every training step
        wait for the device. The pipeline checks values before encoding; the trainer checks its data.
        """
        config = self.config
        if images.ndim != 4:
            raise ValueError(f"{name} must be a (batch, channels, height, width) tensor, got shape {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)}): pass at least one image")
        if images.shape[1] != config.in_channels:
            raise ValueError(
                f"{name} must have {config.in_channels} channels, got {images.shape[1]}: "
                + ("convert PIL images with image.convert('RGB')" if config.in_channels == 3 else "convert them first")
            )
        if tuple(images.shape[-2:]) != (config.sample_size, config.sample_size):
            raise ValueError(
                f"{name} must be {config.sample_size}x{config.sample_size} for this encoder, got "
                f"{images.shape[-2]}x{images.shape[-1]}: resize them (e.g. image.resize(({config.sample_size}, "
                f"{config.sample_size}))) or build a model for this size"
            )

    def concepts_to_tokens(self, concepts: torch.Tensor) -> torch.Tensor:
        """Map concepts `(B, N)` to tokens `(B, N, token_dim)` (scalar mode only).

        This is how edited concepts (swapped or swept) become a UNet condition again.
        """
        if self.config.token_mode == "vector":
            raise ValueError(
                "concepts_to_tokens needs token_mode 'scalar' or 'angle': in 'vector' mode the tokens come from the image "
                "directly and concepts are only a summary; edit tokens instead (pipeline(tokens=...))"
            )
        if concepts.ndim != 2 or concepts.shape[1] != self.config.num_concepts:
            raise ValueError(
                f"concepts must have shape (batch, {self.config.num_concepts}), got {tuple(concepts.shape)}: "
                "pass one value per concept, as returned by encode()"
            )
        weight = self.token_mlps.weights[0]
        concepts = concepts.to(device=weight.device, dtype=weight.dtype)
        if self.config.token_mode == "angle":
            concepts = torch.stack((concepts.cos(), concepts.sin()), dim=-1)
        return self.token_mlps(concepts)

    def forward(self, images: torch.Tensor, return_dict: bool = True):
        """Encode images `(B, C, H, W)` in model space, [-1, 1], to concepts `(B, N)` and tokens `(B, N, d)`.

        Shapes are checked here; values are not (no host sync per training step). The pipeline takes
        diffusers' [0, 1] images and checks them before calling this.
        """
        self.check_images(images)
        features = self.backbone(images)
        if self.config.token_mode == "scalar":
            concepts = self.to_concepts(features)
            tokens = self.token_mlps(concepts)
        elif self.config.token_mode == "angle":
            planar = self.to_concepts(features).view(-1, self.config.num_concepts, 2)
            concepts = torch.atan2(planar[..., 1], planar[..., 0])
            tokens = self.token_mlps(F.normalize(planar, dim=-1, eps=1e-6))
        else:
            tokens = self.to_tokens(features).view(-1, self.config.num_concepts, self.config.token_dim)
            concepts = tokens.mean(dim=-1)
        if not return_dict:
            return concepts, tokens
        return ConceptEncoderOutput(concepts=concepts, tokens=tokens)

    def save_pretrained(self, save_directory, safe_serialization: bool = True, variant=None, **kwargs):
        """Save config and safetensors weights, plus a copy of this module as `concept_encoder.py`.

        The copy lets `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` (for a pipeline)
        and `diffusers.AutoModel.from_pretrained(..., trust_remote_code=True)` (through the config's
        `auto_map`) build the encoder where concept-diffusion is not installed. `variant` names the
        weights file as diffusers does (`diffusion_pytorch_model.fp16.safetensors`).
        """
        if not safe_serialization:
            raise ValueError("ConceptEncoder saves safetensors only: drop safe_serialization=False")
        super().save_pretrained(save_directory, safe_serialization=True, variant=variant, **kwargs)
        shutil.copyfile(os.path.abspath(__file__), os.path.join(save_directory, f"{CODE_MODULE}.py"))
