"""The baselines' training loop: EncDiff's data order, batch size and metrics, a VAE objective.

Batches come from `concept_diffusion.training.data` with the same seed, so a baseline sees the
same images in the same order as an EncDiff run with that seed and batch size, and the log has the
EncDiff trainer's format (JSONL: step, images_seen, seconds, loss, ...; the metrics every
`eval_every` steps; a last record with "final": true), so one plot reads both.
"""

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from concept_diffusion.training.data import batch_loader, load_training_data, step_generator

from .models import KINDS, GaussianVAE

RECONSTRUCTION_IMAGES = 64
RECONSTRUCTION_SEED_OFFSET = 104729  # a batch drawn apart from the training order


@dataclass
class BaselineResult:
    """What a finished baseline run left behind."""

    model_file: str
    step: int
    images_seen: int
    seconds: float
    metrics: dict
    log_file: str


def reconstruction_batch(dataset, seed: int, size: int = RECONSTRUCTION_IMAGES) -> torch.Tensor:
    """The fixed `(size, C, H, W)` batch in [-1, 1] on which every model's reconstruction MSE is measured."""
    return next(iter(batch_loader(dataset, size, seed=seed + RECONSTRUCTION_SEED_OFFSET)))["images"]


def reconstruction_mse(reconstructions: torch.Tensor, images: torch.Tensor) -> float:
    """Mean squared error in [0, 1] pixel units between two [-1, 1] batches (reconstructions clipped first)."""
    return float((((reconstructions.float().clamp(-1, 1) - images.float()) / 2) ** 2).mean())


def metric_sizes(eval_samples: int) -> dict:
    """The sample sizes the EncDiff trainer gives each fast metric during training (same protocol, same cost)."""
    eval_points = max(eval_samples // 2, 1)
    return {
        "factor_vae": {"num_train": eval_samples, "num_eval": eval_points, "num_variance_estimate": eval_samples,
                       "batch_size": min(64, eval_samples)},
        "dci": {"num_train": eval_samples, "num_test": eval_points},
        "mig": {"num_train": eval_samples},
    }


def posterior_mean_function(model: GaussianVAE, device: torch.device, batch_size: int = 64):
    """observations (n, H, W, C) in [0, 1] -> posterior means (n, z_dim): disentanglement_lib's representation."""

    def representation_fn(observations: np.ndarray) -> np.ndarray:
        codes = []
        with torch.inference_mode():
            for start in range(0, len(observations), batch_size):
                images = torch.from_numpy(np.ascontiguousarray(observations[start : start + batch_size])).permute(0, 3, 1, 2)
                codes.append(model.posterior(images.to(device) * 2 - 1)[0].float().cpu().numpy())
        return np.concatenate(codes)

    return representation_fn


def train_baseline(
    kind: str,
    data_name: str = "shapes3d-procedural",
    image_size: int = 32,
    z_dim: int = 10,
    width: int = 64,
    batch_size: int = 64,
    lr: float = 1e-4,
    max_steps: Optional[int] = None,
    max_minutes: Optional[float] = None,
    eval_every: int = 500,
    eval_samples: int = 2000,
    seed: int = 0,
    output_dir: str = "outputs/baseline",
    device: str = "cpu",
    beta: Optional[float] = None,
    eval_metrics: Sequence[str] = ("factor_vae", "dci", "mig"),
    log_every: int = 10,
    num_workers: int = 0,
) -> BaselineResult:
    """Train a beta-VAE or beta-TCVAE on `data_name` and score its posterior means like EncDiff's concepts.

    Adam at `lr` (disentanglement_lib's 1e-4), constant. Stops after `max_steps` or `max_minutes`,
    whichever comes first. Every `eval_every` steps (0: only at the end) and at the end it logs the
    fast metrics (EncDiff's sizes, from `eval_samples`) and `recon_mse`, the reconstruction MSE in
    [0, 1] pixel units of a fixed batch of 64 images decoded from the posterior mean. `seconds`
    counts evaluation time too, as the EncDiff trainer's does. Writes `log.jsonl`,
    `model.safetensors` and `baseline.json` (the arguments) to `output_dir`.

    Example:
        >>> result = train_baseline("beta_tcvae", image_size=32, z_dim=10, width=64, max_steps=2000,
        ...                         output_dir="outputs/beta_tcvae")
        >>> result.metrics["factor_vae.eval_accuracy"], result.metrics["recon_mse"]
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from concept_diffusion.evaluation import evaluate

    arguments = {k: v for k, v in locals().items() if k not in ("save_file", "tqdm", "evaluate")}
    arguments["eval_metrics"] = list(eval_metrics)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if max_steps is None and max_minutes is None:
        raise ValueError("set max_steps or max_minutes (or both): training needs a stopping point")
    for name in ("max_steps", "max_minutes"):
        if arguments[name] is not None and not arguments[name] > 0:
            raise ValueError(f"{name} must be positive, got {arguments[name]}")
    unknown = sorted(set(eval_metrics) - set(metric_sizes(eval_samples)))
    if unknown:
        raise ValueError(f"eval_metrics {unknown} are not logged during training: use some of {sorted(metric_sizes(eval_samples))}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but torch sees no CUDA GPU here: pass device='cpu'")
    device = torch.device(device)

    os.makedirs(output_dir, exist_ok=True)
    dataset, ground_truth = load_training_data(data_name, image_size)
    if ground_truth is None:
        raise ValueError(f"{data_name} has no factor columns: the baselines are scored by disentanglement metrics, so use data with factors")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GaussianVAE(kind, sample_size=image_size, z_dim=z_dim, width=width, beta=beta, dataset_size=len(dataset),
                            in_channels=ground_truth.num_channels)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fixed = reconstruction_batch(dataset, seed).to(device)
    sizes = metric_sizes(eval_samples)

    def evaluate_now() -> dict:
        model.eval()
        try:
            scores = {}
            if eval_metrics:
                scores = evaluate(posterior_mean_function(model, device), ground_truth, metrics=list(eval_metrics), fast=True,
                                  seed=seed, metric_kwargs={m: sizes[m] for m in eval_metrics}, progress=False)
            with torch.inference_mode():
                scores["recon_mse"] = reconstruction_mse(model.reconstruct(fixed), fixed)
        finally:
            model.train()
        return scores

    log_path = os.path.join(output_dir, "log.jsonl")
    progress = tqdm(total=max_steps, desc=f"training {kind}", unit="step", dynamic_ncols=True)
    step, metrics = 0, {}
    started = time.monotonic()
    loader = batch_loader(dataset, batch_size, seed, num_workers=num_workers)
    with open(log_path, "w") as log_file:
        for batch in loader:
            images = batch["images"].to(device, non_blocking=True)
            terms = model.loss(images, step_generator(seed, step, 0, device))
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            step += 1
            elapsed = time.monotonic() - started
            progress.update(1)
            record = None
            if step % log_every == 0 or step == 1:  # the loop's only host syncs, as in the EncDiff trainer
                record = {"step": step, "images_seen": step * batch_size, "seconds": round(elapsed, 3), **terms.scalars()}
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"the {kind} loss became {record['loss']} by step {step}: lower lr (now {lr})")
                progress.set_postfix(loss=f"{record['loss']:.1f}", img_s=f"{step * batch_size / max(elapsed, 1e-9):.0f}",
                                     refresh=False)
            if eval_every and step % eval_every == 0:
                record = {**(record or {"step": step, "images_seen": step * batch_size, "seconds": round(elapsed, 3)}), **evaluate_now()}
            if record is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            out_of_steps = max_steps is not None and step >= max_steps
            out_of_time = max_minutes is not None and elapsed >= 60 * max_minutes
            if out_of_steps or out_of_time:
                break
        progress.close()
        metrics = evaluate_now()
        seconds = time.monotonic() - started
        log_file.write(json.dumps({"step": step, "images_seen": step * batch_size, "seconds": round(seconds, 3),
                                   "final": True, **metrics}) + "\n")

    model_file = os.path.join(output_dir, "model.safetensors")
    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}, model_file + ".tmp")
    os.replace(model_file + ".tmp", model_file)
    with open(os.path.join(output_dir, "baseline.json.tmp"), "w") as file:
        json.dump({**arguments, "beta": model.beta, "dataset_size": len(dataset)}, file, indent=2)
    os.replace(os.path.join(output_dir, "baseline.json.tmp"), os.path.join(output_dir, "baseline.json"))
    return BaselineResult(model_file=model_file, step=step, images_seen=step * batch_size, seconds=seconds,
                          metrics=metrics, log_file=log_path)
