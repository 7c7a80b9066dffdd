"""Which concept carries which factor: the concept-factor map of a trained model.

For images with known factors, the normalised mutual information of every (concept, factor) pair
(each concept binned in 20 equal-width bins and the MI divided by the factor's entropy, as MIG does)
and, per factor, how well all concepts together predict it (test accuracy of a gradient-boosted
classifier, DCI's informativeness per factor). A disentangled model has one bright cell per factor
and accuracies near 1; an entangled one smears each factor over several concepts.
"""

from typing import List, Sequence

import numpy as np

from concept_diffusion.evaluation.mutual_information import discrete_entropy, discrete_mutual_info, histogram_discretize

# A concept whose best normalised MI with any factor is below this carries no factor worth naming.
MIN_LABEL_INFORMATION = 0.1


def concept_factor_map(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> tuple:
    """(normalised MI (concepts, factors), per-factor test accuracy (factors,)) for codes (n, d) and factors (n, k).

    The first two thirds of the points fit the classifiers, the last third tests them.

    Example:
        >>> normalised, accuracy = concept_factor_map(codes, factors)
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (n, d) and factors (n, k) must have the same n, got {codes.shape} and {factors.shape}")
    if len(codes) < 30:
        raise ValueError(f"the concept-factor map needs at least 30 points, got {len(codes)}: pass more images")
    mutual_information = discrete_mutual_info(histogram_discretize(codes), factors)
    normalised = mutual_information / np.maximum(discrete_entropy(factors), 1e-12)[None, :]
    split = 2 * len(codes) // 3
    accuracy = np.array([
        HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(codes[:split], factors[:split, j])
        .score(codes[split:], factors[split:, j])
        for j in range(factors.shape[1])
    ])
    return normalised, accuracy


def map_concepts(model, data, num_points: int = 3000, seed: int = 0) -> dict:
    """Encode `num_points` random images of `data` with `model` (a pipeline, a concept encoder, or anything
    `evaluate` takes) and map its concepts to the data's factors.

    Returns `{"factors": names, "normalised_mutual_information": (N, K), "accuracy": (K,), "labels": [...]}`,
    where `labels` names the factor each concept carries most (`concept_labels`).

    Example:
        >>> concept_map = map_concepts(pipe, load_ground_truth("shapes3d-procedural", image_size=32))
        >>> concept_map["labels"]          # e.g. ['wall_hue', 'object_hue', 'floor_hue', ...]
    """
    from concept_diffusion.evaluation.evaluate import representation_function

    factors, images = data.sample(num_points, np.random.RandomState(seed))
    representation_fn, restore = representation_function(model)
    try:
        codes = representation_fn(images)
    finally:
        restore()
    normalised, accuracy = concept_factor_map(codes, factors, seed)
    names = list(data.factor_names)
    return {"factors": names, "normalised_mutual_information": normalised, "accuracy": accuracy,
            "labels": concept_labels(normalised, names)}


def concept_labels(normalised: np.ndarray, factor_names: Sequence[str], min_information: float = MIN_LABEL_INFORMATION) -> List[str]:
    """The factor each concept carries most (by normalised MI), or "-" when it carries none above `min_information`.

    Example:
        >>> concept_labels(np.array([[0.9, 0.0], [0.05, 0.02]]), ["floor_hue", "scale"])
        ['floor_hue', '-']
    """
    best = normalised.argmax(axis=1)
    return [factor_names[j] if normalised[i, j] >= min_information else "-" for i, j in enumerate(best)]


def plot_concept_factor_map(normalised: np.ndarray, accuracy: np.ndarray, factor_names: Sequence[str], png_path: str) -> None:
    """Heatmap of the normalised MI, factors as rows (labelled with their accuracy), concepts as columns."""
    # A Figure without pyplot, so that a notebook's own inline plots keep working.
    from matplotlib.figure import Figure

    from concept_diffusion.atomic import atomic_path

    num_concepts, num_factors = normalised.shape
    figure = Figure(figsize=(1.6 + 0.55 * num_concepts, 1.2 + 0.5 * num_factors))
    axis = figure.subplots()
    image = axis.imshow(normalised.T, vmin=0, vmax=max(float(normalised.max()), 1e-6), cmap="viridis", aspect="auto")
    axis.set_xticks(range(num_concepts), [str(i) for i in range(num_concepts)])
    axis.set_yticks(range(num_factors), [f"{name} ({acc:.2f})" for name, acc in zip(factor_names, accuracy)])
    axis.set_xlabel("concept")
    axis.set_title("normalised mutual information (factor: accuracy from all concepts)", fontsize=9)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=100)
