"""`evaluate`: encode ground-truth data with a model and compute disentanglement metrics.

Each metric starts from a fresh `numpy.random.RandomState(seed)`, as disentanglement_lib's
`evaluate` does for every metric, so a score here is the score there. DCI, MIG, SAP and
modularity all begin by drawing the same training points (and DCI, SAP and modularity the same
test points), so those are sampled and encoded once and shared.

On a factor grid (`GroundTruthData`) every image the metrics will draw is known before any is
encoded (no draw depends on a code), so each distinct image is rendered and encoded once, in
large chunks (`concept_diffusion.evaluation.code_cache`); the values are those of encoding every
draw, for any deterministic representation.
"""

import inspect
import json
import os

import numpy as np

from concept_diffusion.evaluation.beta_vae import beta_vae_draws, compute_beta_vae
from concept_diffusion.evaluation.code_cache import CodeCache, IndexedObservations, check_deterministic
from concept_diffusion.evaluation.dci import compute_dci, dci_from_codes
from concept_diffusion.evaluation.factor_vae import compute_factor_vae, factor_vae_draws
from concept_diffusion.evaluation.mig import compute_mig, mig_from_codes
from concept_diffusion.evaluation.modularity import compute_modularity_explicitness, modularity_explicitness_from_codes
from concept_diffusion.evaluation.sampling import check_count, draw_pairs, require_factor_grid, sample_codes_and_factors
from concept_diffusion.evaluation.sap import compute_sap, sap_from_codes

# Metric name -> the function computing it from data. Output keys are "<name>.<reference key>".
METRICS = {
    "factor_vae": compute_factor_vae,
    "dci": compute_dci,
    "mig": compute_mig,
    "sap": compute_sap,
    "modularity": compute_modularity_explicitness,
    "beta_vae": compute_beta_vae,
}
# Metrics that only need (codes, factors) samples: name -> array version, whether it uses a test set.
_FROM_CODES = {
    "dci": (dci_from_codes, True),
    "mig": (mig_from_codes, False),
    "sap": (sap_from_codes, True),
    "modularity": (modularity_explicitness_from_codes, True),
}
# Metrics that fix one factor, so need a full grid: name -> (name in messages, their random draws).
_GRID_METRICS = {"factor_vae": ("FactorVAE", factor_vae_draws), "beta_vae": ("BetaVAE", beta_vae_draws)}
_CALL_ARGS = ("ground_truth_data", "representation_fn", "random_state")
MIXED_PRECISION = {"bf16": "bfloat16", "fp16": "float16"}


def evaluate(
    model,
    data,
    metrics=("factor_vae", "dci", "mig"),
    batch_size=None,
    seed=0,
    fast=False,
    metric_kwargs=None,
    out=None,
    progress=True,
    n_jobs=None,
    image_size=None,
    cache=True,
    mixed_precision=None,
):
    """Disentanglement scores of a model's concepts on ground-truth data, as a flat dict of floats.

    Args:
        model: a `ConceptDiffusionPipeline`, a `ConceptEncoder`, a local folder or Hub repo id of a
            saved pipeline, or any callable mapping observations (n, H, W, C) in [0, 1] to codes (n, d).
            Models are run in eval mode without gradients, `batch_size` images at a time.
        data: a ground-truth data object or a name for `concept_diffusion.load_ground_truth`. Labelled
            images without a full factor grid score with "dci", "mig", "sap" and "modularity";
            "factor_vae" and "beta_vae" need the grid and refuse such data.
        metrics: names from `METRICS`: "factor_vae", "dci", "mig", "sap", "modularity", "beta_vae".
        batch_size: images per encoder call; default 64 on CPU (fastest there), 512 on an accelerator.
        seed: seed of the `RandomState` each metric starts from (also seeds DCI's and SAP's estimators).
        fast: DCI with HistGradientBoosting instead of the exact gradient-boosted trees (approximate values, for monitoring during training).
        metric_kwargs: per-metric hyperparameters, e.g. `{"dci": {"num_train": 1000, "num_test": 500}}`.
        out: optional path of a JSON file to write the scores to.
        image_size: rendering size when `data` is a name; default: the encoder's `sample_size`.
        cache: on a factor grid, encode each distinct image once (the same values as encoding every
            draw, for a deterministic representation; a stochastic one is refused). False: encode
            every draw, as disentanglement_lib does.
        mixed_precision: "bf16" or "fp16" to encode under `torch.autocast` on a GPU: faster, but
            the codes (and so the scores) are no longer those of float32. Default None: float32.

    Example:
        >>> scores = evaluate(pipe, "shapes3d-procedural", ["factor_vae", "dci"], fast=True,
        ...                   metric_kwargs={"factor_vae": {"num_train": 500, "num_eval": 250}})
        >>> scores["dci.disentanglement"]
    """
    metrics = _check_metrics(metrics)
    metric_kwargs = _check_metric_kwargs(metric_kwargs or {}, metrics)
    check_count(seed, "seed", 0)
    model = _load_model(model)
    data = _load_data(data, model, image_size)
    for name in metrics:
        if name in _GRID_METRICS:
            require_factor_grid(data, _GRID_METRICS[name][0])
    settings = {name: _settings(name, metric_kwargs, seed, fast, n_jobs) for name in metrics}
    representation_fn, restore = representation_function(model, batch_size, mixed_precision)
    try:
        if cache and getattr(data, "has_factor_grid", False) and hasattr(data, "sample_indices_from_factors"):
            check_deterministic(data, representation_fn)
            cached = CodeCache(data, representation_fn, progress)
            data = IndexedObservations(data)
            cached.prefetch(np.concatenate([i for name in metrics for i in _planned_indices(name, data, seed, settings[name])]))
            representation_fn = cached
        scores = _score(metrics, data, representation_fn, seed, settings, progress)
    finally:
        restore()
    if out is not None:
        write_scores(scores, out)
    return scores


def _score(metrics, data, representation_fn, seed, settings, progress):
    from tqdm.auto import tqdm

    scores = {}
    shared_samples = {}
    bar = tqdm(metrics, desc="metrics", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        kwargs = dict(settings[name])
        if name in _FROM_CODES:
            result = _from_shared_samples(name, data, representation_fn, seed, kwargs, shared_samples)
        else:
            with tqdm(total=kwargs["num_train"] + kwargs["num_eval"], desc=name, leave=False, disable=not progress) as votes:
                result = METRICS[name](data, representation_fn, np.random.RandomState(seed), progress=votes, **kwargs)
        scores.update({f"{name}.{key}": float(value) for key, value in result.items()})
    return scores


def _settings(name, metric_kwargs, seed, fast, n_jobs):
    """Keyword arguments of metric `name`: its defaults, the user's, and evaluate's own."""
    kwargs = {**_defaults(name), **metric_kwargs.get(name, {})}
    if name in ("dci", "sap"):
        kwargs["estimator_random_state"] = np.random.RandomState(seed)
    if name == "dci":
        kwargs["fast"] = fast
    if "n_jobs" in kwargs:
        kwargs["n_jobs"] = n_jobs
    return kwargs


def _planned_indices(name, data, seed, kwargs):
    """The index arrays metric `name` will draw from `data` (an `IndexedObservations`) with `kwargs`."""
    random_state = np.random.RandomState(seed)
    if name in _FROM_CODES:
        counts = [kwargs["num_train"]] + ([kwargs["num_test"]] if _FROM_CODES[name][1] else [])
        return [indices for num in counts for _, indices in draw_pairs(data, num, random_state, kwargs["batch_size"])]
    draws = _GRID_METRICS[name][1]
    sizes = {key: kwargs[key] for key in inspect.signature(draws).parameters if key in kwargs}
    return [indices for _, _, indices in draws(data, random_state, **sizes)]


def _load_model(model):
    if isinstance(model, (str, os.PathLike)):
        from concept_diffusion.pipelines import ConceptDiffusionPipeline

        return ConceptDiffusionPipeline.from_pretrained(str(model))
    return model


def _load_data(data, model, image_size):
    if not isinstance(data, (str, os.PathLike)):
        return data
    from concept_diffusion.data import load_ground_truth

    encoder = getattr(model, "concept_encoder", model)
    image_size = image_size or getattr(getattr(encoder, "config", None), "sample_size", None)
    return load_ground_truth(str(data), image_size=image_size)


def _from_shared_samples(name, data, representation_fn, seed, kwargs, shared_samples):
    from_codes, uses_test = _FROM_CODES[name]
    num_train, batch_size = kwargs.pop("num_train"), kwargs.pop("batch_size")
    num_test = kwargs.pop("num_test", None)
    check_count(num_train, "num_train", 2)
    key = (num_train, batch_size, num_test if uses_test else None)
    if key not in shared_samples:
        random_state = np.random.RandomState(seed)
        train = sample_codes_and_factors(data, representation_fn, num_train, random_state, batch_size)
        shared_samples[(num_train, batch_size, None)] = train
        if uses_test:
            check_count(num_test, "num_test", 1)
            test = sample_codes_and_factors(data, representation_fn, num_test, random_state, batch_size)
            shared_samples[key] = train + test
    arrays = shared_samples[key]
    return from_codes(*arrays, **kwargs)


def _defaults(name):
    parameters = inspect.signature(METRICS[name]).parameters
    return {
        key: parameter.default
        for key, parameter in parameters.items()
        if key not in _CALL_ARGS and key not in ("progress", "fast", "estimator_random_state")
    }


def _check_metrics(metrics):
    if isinstance(metrics, str):
        metrics = [name.strip() for name in metrics.split(",") if name.strip()]
    metrics = list(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown or metrics}: choose from {', '.join(METRICS)}.")
    return list(dict.fromkeys(metrics))


def _check_metric_kwargs(metric_kwargs, metrics):
    for name, kwargs in metric_kwargs.items():
        if name not in metrics:
            raise ValueError(f"metric_kwargs has settings for {name!r}, which is not among the metrics {metrics}.")
        allowed = set(_defaults(name)) - {"n_jobs"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)} for metric {name!r}: it accepts {sorted(allowed)}.")
    return metric_kwargs


def representation_function(model, batch_size=None, mixed_precision=None):
    """A numpy function observations (n, H, W, C) in [0, 1] -> codes (n, d) for `model`.

    Returns `(representation_fn, restore)`; `restore()` puts a torch model back into the training
    mode it was in. Accepts what `evaluate` accepts; `batch_size` and `mixed_precision` as there.

    Example:
        >>> fn, restore = representation_function(pipe, batch_size=128)
    """
    model = _load_model(model)
    module = getattr(model, "concept_encoder", model)
    if not _is_torch_module(module):
        if not callable(model):
            raise ValueError(
                f"cannot evaluate a {type(model).__name__}: pass a ConceptDiffusionPipeline, a ConceptEncoder, "
                "a saved pipeline's folder or repo id, or a function observations -> codes (n, d)."
            )
        if mixed_precision is not None:
            raise ValueError(f"mixed_precision={mixed_precision!r} applies to torch models; a plain function runs as it is: leave it None.")
        return model, lambda: None
    import torch

    parameter = next(module.parameters())
    autocast = _autocast(mixed_precision, parameter.device)
    if batch_size is None:
        batch_size = 64 if parameter.device.type == "cpu" else 512
    check_count(batch_size, "batch_size", 1)
    was_training = module.training
    module.eval()

    def representation_fn(observations):
        codes = []
        with torch.inference_mode(), autocast:
            for start in range(0, len(observations), batch_size):
                images = to_model_space(observations[start : start + batch_size], parameter)
                codes.append(module(images).concepts.float().cpu().numpy())
        return np.concatenate(codes)

    return representation_fn, lambda: module.train(was_training)


def to_model_space(observations, parameter):
    """Observations (n, H, W, C) in [0, 1] -> the encoder's input (n, C, H, W) in [-1, 1], on its device.

    The one place where evaluation converts images: the metrics' convention (disentanglement_lib's,
    channels last in [0, 1]) to the models' (channels first in [-1, 1]).
    """
    import torch

    images = torch.from_numpy(np.ascontiguousarray(observations)).permute(0, 3, 1, 2)
    return images.to(device=parameter.device, dtype=parameter.dtype) * 2 - 1


def _autocast(mixed_precision, device):
    import contextlib

    import torch

    if mixed_precision is None:
        return contextlib.nullcontext()
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mixed_precision!r}.")
    if device.type != "cuda":
        raise ValueError(
            f"mixed_precision={mixed_precision!r} is for a model on a GPU, but this one is on {device.type}: "
            "leave it None (float32), or move the model with pipe.to('cuda')."
        )
    return torch.autocast("cuda", dtype=getattr(torch, MIXED_PRECISION[mixed_precision]))


def _is_torch_module(model):
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def write_scores(scores, path):
    """Write scores as JSON to `path` atomically (a temporary file, then a rename)."""
    from concept_diffusion.atomic import write_text

    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    write_text(path, json.dumps(scores, indent=2, sort_keys=True) + "\n")
