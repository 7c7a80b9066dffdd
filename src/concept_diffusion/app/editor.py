"""The concept editor's handlers, without Gradio: encode, decode, reset, swap, traverse, attention.

Images come in as PIL images or numpy arrays of any size (uploads) and go out as numpy (H, W, C)
in [0, 1] at the model's resolution. Every decode starts from the noise of `seed`, so moving one
slider changes only what that concept carries; with `invert`, from the image's own inverted noise
(`pipe.invert`, computed once per image and step count), so the rest of the image is kept as well.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from concept_diffusion.app.images import fit_image
from concept_diffusion.evaluation.concept_factors import concept_labels
from concept_diffusion.evaluation.mutual_information import discrete_entropy, discrete_mutual_info, histogram_discretize

DEFAULT_STEPS = 20  # DDIM steps of a decode: the trainer's sample_steps
DEFAULT_RANGE = (-3.0, 3.0)  # slider range of a concept when no data tells its spread
INVERSIONS_KEPT = 16  # inverted noises the editor remembers (one per image and step count)


@dataclass
class ConceptStatistics:
    """What data tells about each concept: its slider range and the factor it carries most."""

    ranges: np.ndarray  # (N, 2): 2nd and 98th percentile over the data
    factors: List[Optional[str]]  # per concept: the factor name, or None


def concept_statistics(pipe, data, num_images: int = 1000, seed: int = 0, batch_size: int = 250) -> ConceptStatistics:
    """Encode `num_images` random images of `data` (a `GroundTruthData`) and describe each concept.

    A concept's factor is the one with the highest mutual information normalised by the factor's
    entropy (as MIG bins it: 20 equal-width bins), if that is at least `concept_factors.MIN_LABEL_INFORMATION`.
    """
    factors, images = data.sample(num_images, np.random.RandomState(seed))
    codes = np.concatenate([pipe.encode(images[i : i + batch_size]).cpu().numpy() for i in range(0, num_images, batch_size)])
    ranges = np.quantile(codes, [0.02, 0.98], axis=0).T
    normalised = discrete_mutual_info(histogram_discretize(codes), factors) / np.maximum(discrete_entropy(factors), 1e-12)[None]
    names = [None if label == "-" else label for label in concept_labels(normalised, list(data.factor_names))]
    return ConceptStatistics(ranges=ranges, factors=names)


class ConceptEditor:
    """Edit the concepts of a `ConceptDiffusionPipeline`: the handlers behind `build_demo`.

    Args:
        pipe: the pipeline.
        data: optional `GroundTruthData` of the model's training data: gives example images, each
            concept's range and the factor it carries.
        default_steps: denoising steps of a decode; `max_steps` caps the quality setting (CPU users).
        invert: start with "invert first" on: edits start from the image's inverted noise instead of fresh noise.
        num_examples: example images taken from `data`.
        num_reference_images: images of `data` encoded for the ranges and factor names.

    Example:
        >>> editor = ConceptEditor(pipe, load_ground_truth("shapes3d-procedural", image_size=32))
        >>> concepts = editor.encode(image)
        >>> concepts[3] += 1.0
        >>> edited = editor.decode(concepts)          # (H, W, C) in [0, 1]
    """

    def __init__(self, pipe, data=None, default_steps: int = DEFAULT_STEPS, max_steps: Optional[int] = None,
                 invert: bool = False, num_examples: int = 8, num_reference_images: int = 1000, seed: int = 0):
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        config = pipe.concept_encoder.config
        self.num_concepts, self.sample_size, self.channels = config.num_concepts, config.sample_size, config.in_channels
        self.max_steps = max_steps if max_steps is not None else max(default_steps, 50)
        self.default_steps = min(default_steps, self.max_steps)
        self.seed, self.invert = seed, bool(invert)
        self._inversions = OrderedDict()
        if data is None:
            self.statistics = ConceptStatistics(np.tile(np.array(DEFAULT_RANGE), (self.num_concepts, 1)), [None] * self.num_concepts)
            self.examples = []
        else:
            self.statistics = concept_statistics(pipe, data, num_images=num_reference_images, seed=seed)
            self.examples = list(data.sample_observations(num_examples, np.random.RandomState(seed + 1)))

    @property
    def labels(self) -> List[str]:
        """Slider labels: "concept 3: floor_hue" where the data names its factor, else "concept 3"."""
        return [f"concept {i}" + (f": {factor}" if factor else "") for i, factor in enumerate(self.statistics.factors)]

    def fit(self, image, name: str = "image") -> np.ndarray:
        if image is None:
            raise ValueError(f"{name} is missing: upload an image or pick an example")
        return fit_image(image, self.sample_size, self.channels)

    def _steps(self, steps) -> int:
        steps = self.default_steps if steps is None else int(steps)
        if not 1 <= steps <= self.max_steps:
            raise ValueError(f"steps must be in 1..{self.max_steps}, got {steps}")
        return steps

    def _generator(self, seed) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed if seed is None else int(seed))

    def encode(self, image) -> List[float]:
        """The N concepts of an image, as plain floats."""
        return self.pipe.encode(self.fit(image)[None])[0].tolist()

    def inverted_noise(self, fitted: np.ndarray, steps: int) -> torch.Tensor:
        """The inverted noise `(1, C, h, w)` of a fitted image at `steps` steps, computed once and remembered."""
        key = (fitted.tobytes(), fitted.shape, steps)
        if key not in self._inversions:
            self._inversions[key] = self.pipe.invert(fitted[None], num_inference_steps=steps).latents
            while len(self._inversions) > INVERSIONS_KEPT:
                self._inversions.popitem(last=False)
        self._inversions.move_to_end(key)
        return self._inversions[key]

    def _starting_noise(self, fitted: Optional[np.ndarray], steps: int, invert: Optional[bool]) -> Optional[torch.Tensor]:
        """The image's inverted noise with "invert first" on (`invert`, else the editor's setting); None: fresh noise."""
        if not (self.invert if invert is None else bool(invert)):
            return None
        if fitted is None:
            raise ValueError("invert first needs the image the concepts came from: pass image=..., or turn invert off")
        return self.inverted_noise(fitted, steps)

    @property
    def can_sample(self) -> bool:
        """Whether the pipeline has a concept prior to draw random concepts from."""
        return getattr(self.pipe, "concept_prior", None) is not None

    def random_concepts(self, seed: Optional[int] = None) -> List[float]:
        """N concepts drawn from the pipeline's concept prior (its own kind) with `seed`."""
        if not self.can_sample:
            raise ValueError("this model has no concept prior: fit one with `concept-diffusion fit-prior FOLDER --data DATA`")
        return self.pipe.concept_prior.sample(1, generator=self._generator(seed))[0].tolist()

    def decode(self, concepts: Sequence[float], steps: Optional[int] = None, seed: Optional[int] = None,
               invert: Optional[bool] = None, image=None) -> np.ndarray:
        """Draw an image from (edited) concepts, from the noise of `seed`, or with `invert` from `image`'s inverted noise."""
        values = np.asarray(concepts, dtype=np.float32)
        if values.shape != (self.num_concepts,):
            raise ValueError(f"concepts must be {self.num_concepts} numbers, one per concept, got shape {values.shape}")
        steps = self._steps(steps)
        latents = self._starting_noise(None if image is None else self.fit(image), steps, invert)
        out = self.pipe(concepts=torch.from_numpy(values)[None], num_inference_steps=steps, latents=latents,
                        generator=self._generator(seed), output_type="np")
        return out.images[0]

    def swap(self, image, reference, concept_indices: Sequence[int], steps: Optional[int] = None,
             seed: Optional[int] = None, invert: Optional[bool] = None) -> np.ndarray:
        """`image` with the concepts `concept_indices` taken from `reference` (with `invert`, from `image`'s inverted noise)."""
        indices = [int(index) for index in concept_indices or []]
        if not indices:
            raise ValueError("no concept chosen: tick at least one concept to take from image B")
        source, steps = self.fit(image, "image A"), self._steps(steps)
        out = self.pipe.swap(source[None], self.fit(reference, "image B")[None], concept_indices=indices, pairwise=True,
                             num_inference_steps=steps, latents=self._starting_noise(source, steps, invert),
                             generator=self._generator(seed), output_type="np")
        return out.images[0][0]

    def traverse(self, image, concept_index: int, low: float, high: float, num_values: int = 8,
                 steps: Optional[int] = None, seed: Optional[int] = None, invert: Optional[bool] = None) -> List[tuple]:
        """(image, caption) pairs: `concept_index` swept from `low` to `high` in `num_values` values."""
        num_values = int(num_values)
        if not 2 <= num_values <= 32:
            raise ValueError(f"num_values must be in 2..32, got {num_values}")
        values = torch.linspace(float(low), float(high), num_values)
        source, steps = self.fit(image), self._steps(steps)
        out = self.pipe.traverse(source[None], concept_index=int(concept_index), values=values, num_inference_steps=steps,
                                 latents=self._starting_noise(source, steps, invert), generator=self._generator(seed),
                                 output_type="np")
        return [(picture, f"concept {int(concept_index)} = {value:.2f}") for picture, value in zip(out.images[0], values.tolist())]

    def attention(self, image, steps: Optional[int] = None, seed: Optional[int] = None):
        """A PIL grid of each concept's cross-attention map over the image, labelled like the sliders."""
        labels = [f"c{i}: {factor}" if factor else f"concept {i}" for i, factor in enumerate(self.statistics.factors)]
        return self.pipe.attention_grid(self.fit(image)[None], concept_labels=labels, tile_size=160,
                                        num_inference_steps=self._steps(steps), generator=self._generator(seed))
