"""Fit a `ConceptPrior` on the concepts of a pipeline's training images (a training run does it at its end;
`concept-diffusion fit-prior` does it for a saved pipeline)."""

from typing import Iterable

import numpy as np
import torch

from concept_diffusion.models.concept_prior import PRIOR_KINDS, ConceptPrior

PRIOR_IMAGES = 4000  # images whose concepts are kept (and the mixture is fitted on)
PRIOR_COMPONENTS = 16  # Gaussian components of the "gmm" kind


def prior_from_concepts(concepts: torch.Tensor, kind: str = "independent", num_components: int = PRIOR_COMPONENTS,
                        seed: int = 0) -> ConceptPrior:
    """A `ConceptPrior` holding `concepts` (n, N) and a Gaussian mixture fitted on them (scikit-learn, full
    covariances), so that every kind can be drawn; `kind` is the default one."""
    from sklearn.mixture import GaussianMixture

    concepts = torch.as_tensor(concepts, dtype=torch.float32).cpu()
    if concepts.ndim != 2 or len(concepts) < 2:
        raise ValueError(f"concepts must be (n >= 2, N), got shape {tuple(concepts.shape)}")
    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind must be one of {PRIOR_KINDS}, got {kind!r}")
    num_components = min(num_components, len(concepts))
    mixture = GaussianMixture(num_components, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(concepts.double().numpy())
    prior = ConceptPrior(num_concepts=concepts.shape[1], num_points=len(concepts), num_components=num_components, kind=kind)
    prior.points.copy_(concepts)
    prior.means.copy_(torch.from_numpy(mixture.means_))
    prior.scale_tril.copy_(torch.linalg.cholesky(torch.from_numpy(mixture.covariances_)))
    prior.weights.copy_(torch.from_numpy(mixture.weights_))
    return prior.eval()


@torch.no_grad()
def fit_concept_prior(pipe, images: Iterable, kind: str = "independent", num_components: int = PRIOR_COMPONENTS,
                      seed: int = 0) -> ConceptPrior:
    """Encode `images` (an array (n, H, W, C) in [0, 1], or an iterable of such batches) with `pipe` and fit a prior.

    Example:
        >>> data = load_ground_truth("shapes3d-procedural", image_size=32)
        >>> pipe.concept_prior = fit_concept_prior(pipe, data.sample_observations(4000, np.random.RandomState(0)))
    """
    batches = [images[i : i + 500] for i in range(0, len(images), 500)] if isinstance(images, np.ndarray) else images
    concepts = torch.cat([pipe.encode(batch).float().cpu() for batch in batches])
    return prior_from_concepts(concepts, kind=kind, num_components=num_components, seed=seed)


@torch.no_grad()
def prior_of_training_data(encoder, dataset, config, device) -> ConceptPrior:
    """The prior a training run saves with its pipeline: the concepts of up to PRIOR_IMAGES of its training images
    (drawn with the run's seed), encoded by `encoder` in eval mode."""
    from concept_diffusion.training.data import batch_loader
    from concept_diffusion.training.runtime import images_to_device

    count = min(PRIOR_IMAGES, len(dataset))
    batch_size = min(500, count)
    loader = batch_loader(dataset, batch_size, seed=config.seed + 4099)
    concepts = torch.cat([encoder(images_to_device(batch, device, config.data)).concepts.float().cpu()
                          for _, batch in zip(range(-(-count // batch_size)), loader)])[:count]
    distinct = len(torch.unique(concepts, dim=0))
    return prior_from_concepts(concepts, num_components=max(1, min(PRIOR_COMPONENTS, distinct // 4)), seed=config.seed)


def attach_prior(pipe, prior: ConceptPrior) -> None:
    """Make `prior` the pipeline's `concept_prior` component (saved and pushed with it)."""
    if prior.config.num_concepts != pipe.concept_encoder.config.num_concepts:
        raise ValueError(f"the prior draws {prior.config.num_concepts} concepts, the pipeline has "
                         f"{pipe.concept_encoder.config.num_concepts}: fit it on this pipeline's concepts")
    pipe.register_modules(concept_prior=prior)
