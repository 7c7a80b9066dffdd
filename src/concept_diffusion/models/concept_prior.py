"""ConceptPrior: a distribution over concept vectors, to draw new images from a trained pipeline.

Fitted on the concepts of training images (`concept_diffusion.training.prior.fit_concept_prior`) and saved with the
pipeline as its optional `concept_prior` component: config.json, safetensors weights, and a copy of this module, which
imports only torch, diffusers and the standard library (it is remote code for users without the package).

Three kinds draw from what was fitted:
- "empirical": the whole concept vector of a random fitted image (no new combinations; the reference);
- "independent": each concept from its own marginal, i.e. from a different random fitted image (new combinations,
  valid images only if each concept carries its own factor);
- "gmm": a Gaussian mixture over the concept vectors (fitted by scikit-learn, sampled here in torch).
"""

import os
import shutil
from typing import List, Optional, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

PRIOR_KINDS = ("empirical", "independent", "gmm")
# The file name of this module's copy beside saved weights.
CODE_MODULE = "concept_prior"


class ConceptPrior(ModelMixin, ConfigMixin):
    r"""A distribution over the N concepts of a pipeline, fitted on the concepts of its training data.

    Args:
        num_concepts: N, the concepts per image.
        num_points: the fitted concept vectors kept (the "empirical" and "independent" kinds draw from them).
        num_components: Gaussian components of the "gmm" kind (0: no mixture fitted).
        kind: the kind `sample` draws from by default, one of "empirical", "independent", "gmm".

    Example:
        >>> prior = fit_concept_prior(pipe, load_ground_truth("shapes3d-procedural", image_size=32))
        >>> concepts = prior.sample(8, generator=torch.Generator().manual_seed(0))   # (8, N)
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_concepts: int = 10, num_points: int = 1, num_components: int = 0, kind: str = "independent"):
        super().__init__()
        check_kind(kind, num_components)
        if num_concepts < 1 or num_points < 1 or num_components < 0:
            raise ValueError(f"num_concepts and num_points must be >= 1 and num_components >= 0, got "
                             f"{num_concepts}, {num_points}, {num_components}")
        self.register_buffer("points", torch.zeros(num_points, num_concepts))
        self.register_buffer("means", torch.zeros(num_components, num_concepts))
        self.register_buffer("scale_tril", torch.zeros(num_components, num_concepts, num_concepts))
        self.register_buffer("weights", torch.zeros(num_components))

    @torch.no_grad()
    def sample(self, num_samples: int, generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
               kind: Optional[str] = None) -> torch.Tensor:
        """`(num_samples, N)` concept vectors drawn from `kind` (default: the config's). With a list of generators,
        row i is drawn from generator i alone, so each row is reproducible on its own."""
        kind = self.config.kind if kind is None else kind
        check_kind(kind, self.config.num_components)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a whole number >= 1, got {num_samples!r}")
        if isinstance(generator, list):
            if len(generator) != num_samples:
                raise ValueError(f"generator is a list of {len(generator)} generators for {num_samples} samples: pass one per sample")
            return torch.cat([self._draw(1, g, kind) for g in generator])
        return self._draw(num_samples, generator, kind)

    def _draw(self, count: int, generator, kind: str) -> torch.Tensor:
        device = self.points.device
        num_points, num_concepts = self.points.shape
        if kind == "empirical":
            return self.points[torch.randint(num_points, (count,), generator=generator, device=device)]
        if kind == "independent":
            rows = torch.randint(num_points, (count, num_concepts), generator=generator, device=device)
            return self.points.gather(0, rows)
        component = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        noise = torch.randn(count, num_concepts, 1, generator=generator, device=device, dtype=self.means.dtype)
        return self.means[component] + (self.scale_tril[component] @ noise)[..., 0]

    def save_pretrained(self, save_directory, safe_serialization: bool = True, variant=None, **kwargs):
        """Save config and safetensors weights, plus a copy of this module as `concept_prior.py`."""
        if not safe_serialization:
            raise ValueError("ConceptPrior saves safetensors only: drop safe_serialization=False")
        super().save_pretrained(save_directory, safe_serialization=True, variant=variant, **kwargs)
        shutil.copyfile(os.path.abspath(__file__), os.path.join(save_directory, f"{CODE_MODULE}.py"))


def check_kind(kind: str, num_components: int) -> None:
    if kind not in PRIOR_KINDS:
        raise ValueError(f"prior kind must be one of {PRIOR_KINDS}, got {kind!r}")
    if kind == "gmm" and num_components < 1:
        raise ValueError("this prior has no Gaussian mixture: fit one with kind='gmm' (fit_concept_prior(pipe, data, kind='gmm'))")
