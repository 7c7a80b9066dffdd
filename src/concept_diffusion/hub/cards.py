"""Model cards for pipelines and encoders, rendered from `model_cards/model_card.md`.

The card's YAML holds what the Hub indexes: library_name diffusers, tags, data set, licence and
`eval_results` (the model-index) with every disentanglement metric given. The body says what the
model is, how to load it with and without the package, how to edit, the training configuration,
the metrics, a swap grid, limitations and the paper's citation.
"""

import numbers
import os
from importlib import resources
from typing import Any, Mapping, Optional

TAGS = ["encdiff", "disentanglement", "concept-tokens", "diffusers"]
TEMPLATE = "model_card.md"
SWAP_GRID_FILE = "swap_grid.png"

# Display names of the scores that `concept_diffusion.evaluate` returns ("<metric>.<key>", the keys
# of disentanglement_lib); nested results such as {"dci": {"disentanglement": ...}} are flattened
# to the same dotted keys. Scores not listed here keep their key as their name.
METRIC_NAMES = {
    "factor_vae.eval_accuracy": "FactorVAE score",
    "factor_vae.train_accuracy": "FactorVAE score (train)",
    "factor_vae.num_active_dims": "FactorVAE active dimensions",
    "beta_vae.eval_accuracy": "BetaVAE score",
    "beta_vae.train_accuracy": "BetaVAE score (train)",
    "dci.disentanglement": "DCI disentanglement",
    "dci.completeness": "DCI completeness",
    "dci.informativeness_test": "DCI informativeness (test)",
    "dci.informativeness_train": "DCI informativeness (train)",
    "mig.discrete_mig": "MIG",
    "sap.SAP_score": "SAP score",
    "modularity.modularity_score": "Modularity",
    "modularity.explicitness_score_test": "Explicitness (test)",
    "modularity.explicitness_score_train": "Explicitness (train)",
}

# The paper's means over 15 runs (FactorVAE score / DCI disentanglement), quoted in the card.
PAPER_RESULTS = {
    "shapes3d": "FactorVAE 0.999 / DCI disentanglement 0.969 on Shapes3D",
    "mpi3d": "FactorVAE 0.872 / DCI disentanglement 0.685 on MPI3D",
    "cars3d": "FactorVAE 0.773 / DCI disentanglement 0.279 on Cars3D",
}


def flatten_metrics(metrics: Optional[Mapping[str, Any]], prefix: str = "") -> dict:
    """`{"dci": {"disentanglement": 0.9}, "mig.discrete_mig": 0.4}` -> dotted keys, float values.

    Example:
        >>> flatten_metrics({"factor_vae.eval_accuracy": 0.99, "dci": {"completeness": 0.8}})
        {'factor_vae.eval_accuracy': 0.99, 'dci.completeness': 0.8}
    """
    flat = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            flat[name] = float(value)
        else:
            raise ValueError(
                f"metrics[{name!r}] = {value!r}: expected a number (or a dict of numbers), as "
                "concept_diffusion.evaluate returns; drop entries that are not scores"
            )
    return flat


def _template_path() -> str:
    return str(resources.files("concept_diffusion") / "model_cards" / TEMPLATE)


def _dataset_label(dataset: Optional[str]) -> str:
    return f"`{dataset}`" if dataset else "not recorded"


def _paper_reference(dataset: Optional[str]) -> Optional[str]:
    name = (dataset or "").lower().rsplit("/", 1)[-1]
    for key, text in PAPER_RESULTS.items():
        if name.startswith(key):
            return text
    return None


def _eval_results(metrics: dict, dataset: Optional[str]):
    from huggingface_hub import EvalResult

    dataset_id = dataset or "unknown"
    return [
        EvalResult(
            task_type="disentanglement",
            task_name="Disentangled representation learning",
            dataset_type=dataset_id,
            dataset_name=dataset_id,
            metric_type=key,
            metric_name=METRIC_NAMES.get(key, key),
            metric_value=round(value, 6),
        )
        for key, value in metrics.items()
    ]


def _components(model) -> dict:
    """The components a card describes: of a pipeline, of a mapping of loaded components, or an encoder alone."""
    if isinstance(model, Mapping):
        return dict(model)
    if hasattr(model, "concept_encoder"):
        return {name: getattr(model, name, None) for name in ("concept_encoder", "unet", "scheduler", "vae")}
    return {"concept_encoder": model}


def _training_rows(training_config: Optional[Mapping[str, Any]]) -> list:
    rows = []
    for key, value in (training_config or {}).items():
        if isinstance(value, Mapping):
            rows.extend((f"{key}.{sub_key}", sub_value) for sub_key, sub_value in _training_rows(value))
        else:
            rows.append((str(key), str(value).replace("|", "\\|")))
    return rows


def render_model_card(
    model,
    repo_id: str,
    *,
    metrics: Optional[Mapping[str, Any]] = None,
    dataset: Optional[str] = None,
    training_config: Optional[Mapping[str, Any]] = None,
    swap_grid: Optional[str] = None,
    traversal_grid: Optional[str] = None,
    concept_factor_map: Optional[str] = None,
    fidelity: Optional[Mapping[str, Any]] = None,
    fidelity_note: str = "",
    revision: str = "main",
    license: str = "apache-2.0",
):
    """The `huggingface_hub.ModelCard` of a `ConceptDiffusionPipeline` or a `ConceptEncoder`.

    Args:
        model: the pipeline (or encoder, or a dict of a pipeline's loaded components) being
            shared; its configs fill the card.
        repo_id: the repo the card will live in; the loading examples use it.
        metrics: disentanglement scores on `dataset`, e.g. the dict `concept_diffusion.evaluate`
            returns; each becomes a row of the table and an entry of the card's `eval_results`.
        dataset: the data set trained and evaluated on (a Hub data set id or a source name such as
            "shapes3d-procedural").
        training_config: the training settings, shown as a table.
        swap_grid: file name, inside the repo, of a swap grid image uploaded with the card.
        traversal_grid: file name, inside the repo, of a traversal grid image (one row per concept).
        concept_factor_map: file name, inside the repo, of the concept-factor map heatmap
            (`concept_diffusion.evaluation.concept_factors`).
        fidelity: image fidelity measures (e.g. reconstruction PSNR, edit accuracy), shown as a table under
            `fidelity_note` (what was measured and how).
        revision: the revision the loading examples pin.

    Example:
        >>> card = render_model_card(pipe, "user/encdiff-shapes3d", metrics={"factor_vae": 0.99},
        ...                          dataset="shapes3d-procedural")
        >>> card.save("README.md")
    """
    from huggingface_hub import ModelCard, ModelCardData

    flat_metrics = flatten_metrics(metrics)
    components = _components(model)
    is_pipeline = "unet" in components
    encoder_config = components["concept_encoder"].config
    model_name = repo_id.rsplit("/", 1)[-1]

    card_data = ModelCardData(
        library_name="diffusers",
        license=license,
        tags=TAGS + (["concept-diffusion-pipeline"] if is_pipeline else ["concept-encoder"]),
        datasets=[dataset] if dataset else None,
        model_name=model_name,
        eval_results=_eval_results(flat_metrics, dataset) or None,
        metrics=sorted(flat_metrics) or None,
    )
    context = {
        "kind": "pipeline" if is_pipeline else "encoder",
        "title": f"{model_name}: EncDiff {'pipeline' if is_pipeline else 'concept encoder'}",
        "repo_id": repo_id,
        "revision": revision,
        "num_concepts": encoder_config.num_concepts,
        "token_dim": encoder_config.token_dim,
        "token_mode": encoder_config.get("token_mode", "scalar"),
        "image_size": encoder_config.sample_size,
        "in_channels": encoder_config.in_channels,
        "dataset_label": _dataset_label(dataset),
        "metric_rows": [(METRIC_NAMES.get(key, key), value) for key, value in flat_metrics.items()],
        "paper_reference": _paper_reference(dataset),
        "training_rows": _training_rows(training_config),
        "swap_grid": swap_grid,
        "traversal_grid": traversal_grid,
        "concept_factor_map": concept_factor_map,
        "fidelity_rows": [(str(name), str(value)) for name, value in (fidelity or {}).items()],
        "fidelity_note": fidelity_note,
        # save_pretrained writes config.json's auto_map for encoders registered with an auto class.
        "has_auto_map": getattr(components["concept_encoder"], "_auto_class", None) is not None or "auto_map" in encoder_config,
    }
    if is_pipeline:
        vae = components.get("vae")
        context["space"] = "pixel space" if vae is None else f"latent space of a `{type(vae).__name__}` first stage"
        context["unet_parameters"] = f"{sum(p.numel() for p in components['unet'].parameters()) / 1e6:.2f} M"
        context["scheduler"] = type(components["scheduler"]).__name__
    return ModelCard.from_template(card_data, template_path=_template_path(), **context)


def write_swap_grid(swap_grid, folder: str) -> str:
    """Save `swap_grid` (a PIL image, or the path of an image file) as `swap_grid.png` in `folder`."""
    import PIL.Image

    from concept_diffusion.atomic import atomic_path

    target = os.path.join(folder, SWAP_GRID_FILE)
    if isinstance(swap_grid, (str, os.PathLike)):
        if not os.path.isfile(swap_grid):
            raise FileNotFoundError(f"swap_grid={os.fspath(swap_grid)!r} is not a file: pass a PIL image or an image path")
        swap_grid = PIL.Image.open(swap_grid)
    if not isinstance(swap_grid, PIL.Image.Image):
        raise ValueError(
            f"swap_grid is a {type(swap_grid).__name__}: expected a PIL image (e.g. pipe.swap(...).grid) or an image path"
        )
    with atomic_path(target) as temporary:
        swap_grid.save(temporary, format="PNG")
    return SWAP_GRID_FILE
