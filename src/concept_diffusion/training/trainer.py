"""Stage 2, EncDiff: the concept encoder and the UNet trained jointly with the diffusion loss only.

Runs on CPU, one GPU, or many processes under `accelerate launch` / `torchrun`; the same seed
gives the same weights, and a run resumed from a checkpoint ends where an uninterrupted one does.
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch

from concept_diffusion.models.released_init import zero_init_like_released
from concept_diffusion.presets import build_pipeline
from concept_diffusion.training.checkpoints import (
    check_same_config,
    read_state,
    resolve_resume,
    save_checkpoint,
)
from concept_diffusion.training.config import TrainingConfig
from concept_diffusion.training.data import batch_loader, check_image_size, load_training_data, scorable_metrics, step_generator
from concept_diffusion.training.visualize import concept_swap_grid, plot_curves

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainingResult:
    """What a finished run left behind."""

    pipeline_dir: str
    step: int
    images_seen: int
    seconds: float
    metrics: dict
    log_file: str


def check_writable(folder: str) -> None:
    """Fail before training, not after it, when the run folder cannot be written."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "wb") as file:
            file.write(b"\0" * 65536)
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"output_dir {folder} is not writable ({error.strerror or error}): choose another folder or free space") from error


def make_accelerator(allow_tf32: bool = True, **kwargs):
    """An `Accelerator`; several processes without a GPU (torchrun, `accelerate launch --cpu`) train as one
    job over gloo, which accelerate only does when told it runs on the CPU. On a GPU: TF32 matmuls and
    convolutions where `allow_tf32`, and cuDNN's autotuner (the shapes never change)."""
    from accelerate import Accelerator

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cudnn.benchmark = True
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(cpu=multi_cpu, **kwargs)


def load_first_stage(path: Optional[str], preset_vae, preset: str):
    """The trained vae for a latent preset; None in pixel space."""
    if preset_vae is None:
        return None
    if path is None:
        raise ValueError(
            f"the preset {preset!r} diffuses in the latent space of a first stage: train it first "
            f"(`concept-diffusion train-vae --preset {preset}`) and pass its folder as vae=..."
        )
    import diffusers

    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"vae={path}: no config.json; pass the folder written by train-vae")
    with open(config_path) as file:
        class_name = json.load(file).get("_class_name")
    if class_name not in ("VQModel", "AutoencoderKL"):
        raise ValueError(f"vae={path} holds a {class_name!r}; expected a VQModel or AutoencoderKL")
    return getattr(diffusers, class_name).from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)


def images_to_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """Unscaled first-stage latents (pre-quantisation for a VQModel, the posterior mean for a KL autoencoder)."""
    encoded = vae.encode(images.to(vae.dtype))
    return encoded.latents if hasattr(encoded, "latents") else encoded.latent_dist.mode()


def estimate_scaling_factor(vae, dataset, config: TrainingConfig, device) -> float:
    """1/std of the latents of the first `latent_scale_batches` batches (the same on every process)."""
    loader = batch_loader(dataset, config.batch_size, seed=config.seed + 7919)
    latents = []
    with torch.no_grad():
        for _, batch in zip(range(config.latent_scale_batches), loader):
            latents.append(images_to_latents(vae, batch["images"].to(device)).float().flatten())
    return float(1.0 / torch.cat(latents).std())


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator, config: TrainingConfig) -> torch.Tensor:
    """Training timesteps: uniform, or logit-normal (more weight on high noise with a positive mean)."""
    if config.timestep_sampling == "uniform":
        return torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=generator.device)
    logits = config.timestep_logit_mean + config.timestep_logit_std * torch.randn(batch, generator=generator, device=generator.device)
    return (torch.sigmoid(logits) * num_train_timesteps).long().clamp(0, num_train_timesteps - 1)


def diffusion_loss(unet, noise_scheduler, latents, tokens, generator, config: TrainingConfig):
    """The plain diffusion loss of EncDiff: predict the noise (or v) added at a random timestep."""
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents)
    timesteps = sample_timesteps(batch, noise_scheduler.config.num_train_timesteps, generator, config).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, encoder_hidden_states=tokens).sample
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    elif prediction_type == "sample":
        target = latents
    else:
        target = noise
    error = (prediction.float() - target.float()).abs() if config.loss == "l1" else (prediction.float() - target.float()) ** 2
    per_sample = error.mean(dim=tuple(range(1, error.ndim)))
    if config.snr_gamma is None:
        return per_sample.mean()
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.clamp(snr, max=config.snr_gamma) / snr
    if prediction_type == "v_prediction":
        weights = weights * snr / (snr + 1)
    elif prediction_type == "sample":
        weights = torch.clamp(snr, max=config.snr_gamma)
    return (per_sample * weights).mean()


def _any_process(accelerator, flag: bool) -> bool:
    """True on every process when `flag` is true on one: stopping decisions must agree."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum").item() > 0)


def _first_diverged_step(accelerator, first_bad_step: torch.Tensor) -> int:
    """The earliest step whose loss was not finite on any process (0: none); a host sync, so called
    only where the processes agree to stop and look (log steps, evaluations, checkpoints, the end)."""
    steps = [int(value) for value in accelerator.gather(first_bad_step[None]).tolist()]
    return min((value for value in steps if value > 0), default=0)


def train(config: TrainingConfig) -> TrainingResult:
    """Train EncDiff as `config` says; returns where the final pipeline is and its metrics.

    Example:
        >>> from concept_diffusion.training import TrainingConfig, build_config, train
        >>> result = train(build_config(TrainingConfig, {"preset": "cpu", "max_minutes": 10}))
    """
    from accelerate.utils import ProjectConfiguration, gather_object
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    check_writable(config.output_dir)
    accelerator = make_accelerator(
        allow_tf32=config.allow_tf32,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")),
    )
    device = accelerator.device

    resume_path, resume_state = None, None
    if config.resume:
        resume_path = resolve_resume(config.resume, config.output_dir)
        resume_state = read_state(resume_path)
        check_same_config(resume_state["config"], config.to_dict(), resume_path)

    pipe = build_pipeline(config.preset, seed=config.seed)
    encoder, unet = pipe.concept_encoder, pipe.unet
    if config.released_zero_init:
        zero_init_like_released(unet)
    sample_size, in_channels = encoder.config.sample_size, encoder.config.in_channels
    dataset, ground_truth = load_training_data(config.data, sample_size)
    check_image_size(dataset if ground_truth is None else ground_truth, sample_size, in_channels, config.data, config.preset)
    eval_metrics = scorable_metrics(ground_truth, config.eval_metrics, config.data)
    vae = load_first_stage(config.vae, pipe.vae, config.preset)
    if vae is not None:
        vae.to(device)
        if resume_state is not None:
            scaling_factor = resume_state["scaling_factor"]
        else:
            scaling_factor = estimate_scaling_factor(vae, dataset, config, device)
        vae.register_to_config(scaling_factor=scaling_factor)
    if config.prediction_type is not None:
        pipe.scheduler.register_to_config(prediction_type=config.prediction_type)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    encoder.train(), unet.train()
    params = list(encoder.parameters()) + list(unet.parameters())
    # fused: one kernel for all parameters (and a few percent faster on CPU too)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    lr_scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes
    )
    ema_unet = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup, foreach=True,
                        model_cls=UNet2DConditionModel, model_config=unet.config)
    ema_encoder = (EMAModel(encoder.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup, foreach=True)
                   if config.ema_encoder else None)
    encoder, unet, optimizer, lr_scheduler = accelerator.prepare(encoder, unet, optimizer, lr_scheduler)
    ema_unet.to(device)
    accelerator.register_for_checkpointing(ema_unet)
    if ema_encoder is not None:
        ema_encoder.to(device)
        accelerator.register_for_checkpointing(ema_encoder)

    step = 0
    if resume_path is not None:
        accelerator.load_state(resume_path)
        step = resume_state["step"]
        logger.info("resumed from %s at step %d", resume_path, step)

    if accelerator.is_main_process:
        accelerator.init_trackers("concept-diffusion", config={k: str(v) for k, v in config.to_dict().items()})
    log_path = os.path.join(config.output_dir, "log.jsonl")
    samples_dir = os.path.join(config.output_dir, "samples")
    global_batch = config.batch_size * config.gradient_accumulation_steps * accelerator.num_processes
    loader = batch_loader(dataset, config.batch_size, config.seed, start=step * config.gradient_accumulation_steps,
                          num_workers=config.num_workers, num_processes=accelerator.num_processes,
                          process_index=accelerator.process_index)
    fixed = next(iter(batch_loader(dataset, 8, seed=config.seed + 104729)))["images"]  # the swap grids' images

    def unwrap(model):
        return accelerator.unwrap_model(model)

    def sampling_pipeline():
        return ConceptDiffusionPipeline(concept_encoder=unwrap(encoder), unet=unwrap(unet),
                                        scheduler=DDIMScheduler.from_config(noise_scheduler.config), vae=vae)

    def with_ema(fn):
        """Run fn with the EMA weights swapped into the models (main process only)."""
        swapped = [(ema_unet, unwrap(unet))] + ([(ema_encoder, unwrap(encoder))] if ema_encoder is not None else [])
        for ema, model in swapped:
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
        try:
            return fn()
        finally:
            for ema, model in swapped:
                ema.restore(model.parameters())

    def evaluate_now(final: bool) -> dict:
        scores = {}
        pipe_now = sampling_pipeline()
        pipe_now.set_progress_bar_config(disable=True)
        unwrap(encoder).eval(), unwrap(unet).eval()
        try:
            if ground_truth is not None and eval_metrics and (config.eval_final or not final):
                from concept_diffusion.evaluation import evaluate

                train_points, eval_points = config.eval_samples, max(config.eval_samples // 2, 1)
                sizes = {
                    "factor_vae": {"num_train": train_points, "num_eval": eval_points, "num_variance_estimate": train_points,
                                   "batch_size": min(64, train_points)},
                    "dci": {"num_train": train_points, "num_test": eval_points},
                    "mig": {"num_train": train_points},
                }
                scores = evaluate(pipe_now, ground_truth, metrics=eval_metrics, fast=True, seed=config.seed,
                                  metric_kwargs={m: sizes[m] for m in eval_metrics if m in sizes}, progress=False)
            grid = concept_swap_grid(pipe_now, fixed[:4], fixed[4:8], config.sample_steps, config.seed)
            os.makedirs(samples_dir, exist_ok=True)
            name = "swap_final.png" if final else f"swap_{step:07d}.png"
            grid.save(os.path.join(samples_dir, name))
        finally:
            unwrap(encoder).train(), unwrap(unet).train()
        return scores

    def state():
        return {"config": config.to_dict(), "scaling_factor": vae.config.scaling_factor if vae is not None else None}

    if ground_truth is None and config.eval_metrics:
        logger.warning("%s has no factors: the metrics (%s) are skipped", config.data, ", ".join(config.eval_metrics))

    progress = tqdm(total=config.max_steps, initial=step, desc="training EncDiff", unit="step",
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    started = time.monotonic()
    images_at_start = step * global_batch
    number = step * config.gradient_accumulation_steps
    last_checkpoint = resume_path
    metrics = {}
    # The loop never waits for the device except where every process stops to log, evaluate or save:
    # a non-finite loss is remembered on the device and raised at the next of those points.
    first_bad_step = torch.zeros((), dtype=torch.long, device=device)

    def raise_if_diverged():
        bad_step = _first_diverged_step(accelerator, first_bad_step)
        if bad_step:
            raise TrainingDiverged(
                f"the loss became NaN or infinite at step {bad_step}: lower learning_rate (now {config.learning_rate}), "
                f"raise lr_warmup_steps or use mixed_precision='no'. The last good checkpoint is "
                f"{last_checkpoint or 'none (no checkpoint was saved yet)'}; resume from it with --resume"
            )

    log_file = open(log_path, "a") if accelerator.is_main_process else None
    try:
        for batch in loader:
            images = batch["images"].to(device, non_blocking=True)
            generator = step_generator(config.seed, number, accelerator.process_index, device)
            number += 1
            with accelerator.accumulate(encoder, unet):
                with torch.no_grad():
                    latents = images if vae is None else images_to_latents(vae, images) * vae.config.scaling_factor
                tokens = encoder(images).tokens
                loss = diffusion_loss(unet, noise_scheduler, latents, tokens, generator, config)
                first_bad_step = torch.where((first_bad_step == 0) & ~torch.isfinite(loss.detach()), step + 1, first_bad_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            ema_unet.step(unwrap(unet).parameters())
            if ema_encoder is not None:
                ema_encoder.step(unwrap(encoder).parameters())
            elapsed = time.monotonic() - started
            progress.update(1)
            out_of_steps = config.max_steps is not None and step >= config.max_steps
            out_of_time = config.max_minutes is not None and elapsed >= 60 * config.max_minutes
            at_log = step % config.log_every == 0 or step == 1
            at_eval = bool(config.eval_every) and step % config.eval_every == 0
            at_checkpoint = bool(config.checkpoint_every) and step % config.checkpoint_every == 0 and not out_of_steps
            # Several processes agree on the clock at log steps only: an all-reduce per step would stall the device.
            stop = (accelerator.num_processes == 1 or at_log or out_of_steps) and _any_process(accelerator, out_of_steps or out_of_time)
            if at_log or at_eval or at_checkpoint or stop:
                raise_if_diverged()
            record = None
            if at_log:
                record = {"step": step, "images_seen": step * global_batch, "seconds": round(elapsed, 3),
                          "loss": float(accelerator.gather(loss.detach()[None]).mean()), "lr": lr_scheduler.get_last_lr()[0]}
                postfix = {"loss": f"{record['loss']:.4f}", "img/s": f"{(step * global_batch - images_at_start) / max(elapsed, 1e-9):.0f}"}
                if config.max_minutes is not None:
                    postfix["left"] = time.strftime("%M:%S", time.gmtime(max(60 * config.max_minutes - elapsed, 0)))
                progress.set_postfix(postfix, refresh=False)
            if at_eval:
                if accelerator.is_main_process:
                    scores = with_ema(lambda: evaluate_now(final=False))
                    record = {**(record or {"step": step, "images_seen": step * global_batch, "seconds": round(elapsed, 3)}), **scores}
                accelerator.wait_for_everyone()
            if record is not None and accelerator.is_main_process:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
            if at_checkpoint:
                last_checkpoint = save_checkpoint(accelerator, config.output_dir, step, state(), config.checkpoints_total_limit)
            if stop:
                break
        progress.close()
        seconds = time.monotonic() - started
        replica_digests = gather_object([weights_digest(unwrap(encoder), unwrap(unet))])
        if len(set(replica_digests)) > 1:
            raise RuntimeError(f"the processes ended with different weights ({replica_digests}): a distributed setup bug")
        last_checkpoint = save_checkpoint(accelerator, config.output_dir, step, state(), config.checkpoints_total_limit)
        pipeline_dir = os.path.join(config.output_dir, "pipeline")
        if accelerator.is_main_process:
            metrics = with_ema(lambda: evaluate_now(final=True))
            final = sampling_pipeline()
            ema_unet.copy_to(final.unet.parameters())
            if ema_encoder is not None:
                ema_encoder.copy_to(final.concept_encoder.parameters())
            final.concept_encoder.eval(), final.unet.eval()
            final.save_pretrained(pipeline_dir)
            write_run_card(final, pipeline_dir, config, metrics, os.path.join(samples_dir, "swap_final.png"))
            record = {"step": step, "images_seen": step * global_batch, "seconds": round(seconds, 3), "final": True, **metrics}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            summary = {**record, "num_processes": accelerator.num_processes, "replica_digests": replica_digests,
                       "pipeline": pipeline_dir, "checkpoint": last_checkpoint}
            write_json_atomic(os.path.join(config.output_dir, "run.json"), summary)
            accelerator.log({k: v for k, v in metrics.items()}, step=step)
            plot_curves(log_path, os.path.join(config.output_dir, "curves.png"))
            if config.push_to_hub:
                final.push_to_hub(config.push_to_hub, metrics=metrics, dataset=config.data,
                                  training_config=config.to_dict(), swap_grid=os.path.join(samples_dir, "swap_final.png"))
        accelerator.wait_for_everyone()
        accelerator.end_training()
    finally:
        progress.close()
        if log_file is not None:
            log_file.close()
    return TrainingResult(pipeline_dir=pipeline_dir, step=step, images_seen=step * global_batch,
                          seconds=seconds, metrics=metrics, log_file=log_path)


def weights_digest(*models) -> str:
    """SHA-256 of the models' parameters: equal digests, equal weights.

    Buffers are left out: under DDP each process updates BatchNorm's running statistics with its
    own batch, and they agree only after the next forward broadcasts rank 0's (the saved ones).
    """
    import hashlib

    digest = hashlib.sha256()
    for model in models:
        for name, tensor in sorted(model.named_parameters()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_json_atomic(path: str, value) -> None:
    """Write `value` as JSON to `path` through a temporary file and a rename."""
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)


def write_run_card(pipe, folder: str, config: TrainingConfig, metrics: dict, swap_grid_path: str) -> None:
    """The saved pipeline's model card: metrics, training configuration and the swap grid."""
    from concept_diffusion.hub.cards import render_model_card, write_swap_grid
    from concept_diffusion.hub.push import write_card

    swap_grid = write_swap_grid(swap_grid_path, folder)
    name = os.path.basename(os.path.normpath(config.output_dir)) or "encdiff"
    card = render_model_card(pipe, f"your-name/{name}", metrics=metrics, dataset=config.data,
                             training_config=config.to_dict(), swap_grid=swap_grid)
    write_card(card, folder)
