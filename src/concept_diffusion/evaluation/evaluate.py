"""`evaluate`: encode ground-truth data with a model and compute disentanglement metrics.

Each metric starts from a fresh `numpy.random.RandomState(seed)`, as disentanglement_lib's
`evaluate` does for every metric, so a score here is the score there. DCI, MIG, SAP and
modularity all begin by drawing the same training points (and DCI, SAP and modularity the same
test points), so those are sampled and encoded once and shared.
"""

import inspect
import json
import os
import tempfile

import numpy as np

from concept_diffusion.evaluation.beta_vae import compute_beta_vae
from concept_diffusion.evaluation.dci import compute_dci, dci_from_codes
from concept_diffusion.evaluation.factor_vae import compute_factor_vae
from concept_diffusion.evaluation.mig import compute_mig, mig_from_codes
from concept_diffusion.evaluation.modularity import compute_modularity_explicitness, modularity_explicitness_from_codes
from concept_diffusion.evaluation.sampling import check_count, sample_codes_and_factors
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
_CALL_ARGS = ("ground_truth_data", "representation_fn", "random_state")


def evaluate(
    model,
    data,
    metrics=("factor_vae", "dci", "mig"),
    batch_size=64,
    seed=0,
    fast=False,
    metric_kwargs=None,
    out=None,
    progress=True,
    n_jobs=None,
    image_size=None,
):
    """Disentanglement scores of a model's concepts on ground-truth data, as a flat dict of floats.

    Args:
        model: a `ConceptDiffusionPipeline`, a `ConceptEncoder`, a local folder or Hub repo id of a
            saved pipeline, or any callable mapping observations (n, H, W, C) in [0, 1] to codes (n, d).
            Models are run in eval mode without gradients, `batch_size` images at a time.
        data: a ground-truth data object or a name for `concept_diffusion.load_ground_truth`.
        metrics: names from `METRICS`: "factor_vae", "dci", "mig", "sap", "modularity", "beta_vae".
        seed: seed of the `RandomState` each metric starts from (also seeds DCI's and SAP's estimators).
        fast: DCI with HistGradientBoosting instead of the exact gradient-boosted trees (approximate values, for monitoring during training).
        metric_kwargs: per-metric hyperparameters, e.g. `{"dci": {"num_train": 1000, "num_test": 500}}`.
        out: optional path of a JSON file to write the scores to.
        image_size: rendering size when `data` is a name; default: the encoder's `sample_size`.

    Example:
        >>> scores = evaluate(pipe, "shapes3d-procedural", ["factor_vae", "dci"], fast=True,
        ...                   metric_kwargs={"factor_vae": {"num_train": 500, "num_eval": 250}})
        >>> scores["dci.disentanglement"]
    """
    from tqdm.auto import tqdm

    metrics = _check_metrics(metrics)
    metric_kwargs = _check_metric_kwargs(metric_kwargs or {}, metrics)
    check_count(seed, "seed", 0)
    if isinstance(model, (str, os.PathLike)):
        from concept_diffusion.pipelines import ConceptDiffusionPipeline

        model = ConceptDiffusionPipeline.from_pretrained(str(model))
    if isinstance(data, (str, os.PathLike)):
        from concept_diffusion.data import load_ground_truth

        encoder = getattr(model, "concept_encoder", model)
        image_size = image_size or getattr(getattr(encoder, "config", None), "sample_size", None)
        data = load_ground_truth(str(data), image_size=image_size)
    representation_fn, restore = representation_function(model, batch_size)
    scores = {}
    shared_samples = {}
    try:
        bar = tqdm(metrics, desc="metrics", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            kwargs = {**_defaults(name), **metric_kwargs.get(name, {})}
            if name in ("dci", "sap"):
                kwargs["estimator_random_state"] = np.random.RandomState(seed)
            if name == "dci":
                kwargs["fast"] = fast
            if "n_jobs" in kwargs:
                kwargs["n_jobs"] = n_jobs
            if name in _FROM_CODES:
                result = _from_shared_samples(name, data, representation_fn, seed, kwargs, shared_samples)
            else:
                with tqdm(total=kwargs["num_train"] + kwargs["num_eval"], desc=name, leave=False, disable=not progress) as votes:
                    result = METRICS[name](data, representation_fn, np.random.RandomState(seed), progress=votes, **kwargs)
            scores.update({f"{name}.{key}": float(value) for key, value in result.items()})
    finally:
        restore()
    if out is not None:
        write_scores(scores, out)
    return scores


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


def representation_function(model, batch_size=64):
    """A numpy function observations (n, H, W, C) in [0, 1] -> codes (n, d) for `model`.

    Returns `(representation_fn, restore)`; `restore()` puts a torch model back into the training
    mode it was in. Accepts what `evaluate` accepts.

    Example:
        >>> fn, restore = representation_function(pipe, batch_size=128)
    """
    check_count(batch_size, "batch_size", 1)
    if isinstance(model, (str, os.PathLike)):
        from concept_diffusion.pipelines import ConceptDiffusionPipeline

        model = ConceptDiffusionPipeline.from_pretrained(str(model))
    if hasattr(model, "encode") and hasattr(model, "concept_encoder"):
        module = model.concept_encoder
        encode = model.encode
    elif _is_torch_module(model):
        module = model
        encode = _encoder_call(model)
    elif callable(model):
        return model, lambda: None
    else:
        raise ValueError(
            f"cannot evaluate a {type(model).__name__}: pass a ConceptDiffusionPipeline, a ConceptEncoder, "
            "a saved pipeline's folder or repo id, or a function observations -> codes (n, d)."
        )
    import torch

    was_training = module.training
    module.eval()

    def representation_fn(observations):
        codes = []
        with torch.inference_mode():
            for start in range(0, len(observations), batch_size):
                batch = encode(observations[start : start + batch_size])
                codes.append(batch.detach().float().cpu().numpy() if torch.is_tensor(batch) else np.asarray(batch))
        return np.concatenate(codes)

    return representation_fn, lambda: module.train(was_training)


def _is_torch_module(model):
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _encoder_call(encoder):
    """Observations (n, H, W, C) in [0, 1] -> concepts, through a ConceptEncoder's (B, C, H, W) [-1, 1] input."""
    import torch

    parameter = next(encoder.parameters())

    def encode(observations):
        images = torch.from_numpy(np.ascontiguousarray(observations)).permute(0, 3, 1, 2)
        images = images.to(device=parameter.device, dtype=parameter.dtype) * 2 - 1
        return encoder(images).concepts

    return encode


def write_scores(scores, path):
    """Write scores as JSON to `path` atomically (a temporary file, then a rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(scores, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
