"""Stage 2, EncDiff: the concept encoder and the UNet trained jointly with the diffusion loss only.

Runs on CPU, one GPU, or many processes under `accelerate launch` / `torchrun`; the same seed
gives the same weights, and a run resumed from a checkpoint ends where an uninterrupted one does.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F

from concept_diffusion.atomic import atomic_path, write_json
from concept_diffusion.models.released_init import zero_init_like_released
from concept_diffusion.pipelines.pipeline_concept_diffusion import images_to_latents, unet_condition
from concept_diffusion.presets import build_pipeline
from concept_diffusion.training.checkpoints import save_checkpoint
from concept_diffusion.training.config import TrainingConfig
from concept_diffusion.training.data import (batch_loader, check_image_size, load_training_data, scorable_metrics, step_generator,
                                             without_combinations)
from concept_diffusion.training.prior import attach_prior, prior_of_training_data
from concept_diffusion.training.schedules import RunProgress, gradient_loss_weight_at, warmup_then_decay
from concept_diffusion.training.skip_dropout import SkipDropout
from concept_diffusion.training.runtime import (
    LoopResult,
    Stage,
    compile_models,
    continue_run,
    global_batch,
    images_to_device,
    open_log,
    plain_model,
    resume_point,
    run_loop,
    start_run,
    step_loader,
    write_record,
)
from concept_diffusion.training.visualize import concept_swap_grid, plot_curves

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a finished run left behind."""

    pipeline_dir: str
    step: int
    images_seen: int
    seconds: float
    metrics: dict
    log_file: str


def load_first_stage(path: Optional[str], preset_vae, preset: str):
    """The trained vae for a latent preset; None in pixel space."""
    if preset_vae is None:
        return None
    if path is None:
        raise ValueError(
            f"the preset {preset!r} diffuses in the latent space of a first stage: train it first "
            f"(`concept-diffusion train-vae --preset {preset}`) and pass its folder as vae=..."
        )
    return read_first_stage(path)


def read_first_stage(path: str):
    """The trained first stage in folder `path` (train-vae's OUTPUT_DIR/vae), in eval mode and frozen."""
    import diffusers

    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"vae={path}: no config.json; pass the folder written by train-vae")
    with open(config_path) as file:
        class_name = json.load(file).get("_class_name")
    if class_name not in ("VQModel", "AutoencoderKL"):
        raise ValueError(f"vae={path} holds a {class_name!r}; expected a VQModel or AutoencoderKL")
    return getattr(diffusers, class_name).from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)


def estimate_scaling_factor(vae, dataset, config: TrainingConfig, device) -> float:
    """1/std of the latents of the first `latent_scale_batches` batches (the same on every process)."""
    loader = batch_loader(dataset, config.batch_size, seed=config.seed + 7919)
    latents = []
    with torch.no_grad():
        for _, batch in zip(range(config.latent_scale_batches), loader):
            latents.append(images_to_latents(vae, images_to_device(batch, device, config.data)).float().flatten())
    return float(1.0 / torch.cat(latents).std())


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator, config: TrainingConfig) -> torch.Tensor:
    """Training timesteps: uniform, or logit-normal (more weight on high noise with a positive mean)."""
    if config.timestep_sampling == "uniform":
        return torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=generator.device)
    logits = config.timestep_logit_mean + config.timestep_logit_std * torch.randn(batch, generator=generator, device=generator.device)
    return (torch.sigmoid(logits) * num_train_timesteps).long().clamp(0, num_train_timesteps - 1)


def edge_weights(clean: torch.Tensor, weight: float) -> torch.Tensor:
    """Loss weights (B, 1, H, W) of mean 1 per image that grow with the clean target's gradient magnitude:
    (1 + weight * edge / mean edge) / (1 + weight), edge = |right - here| + |below - here| summed over channels."""
    dx = torch.diff(clean, dim=-1, append=clean[..., -1:]).abs()  # 0 in the last column and row
    dy = torch.diff(clean, dim=-2, append=clean[..., -1:, :]).abs()
    edge = (dx + dy).float().sum(1, keepdim=True)
    mean = edge.mean(dim=(2, 3), keepdim=True)
    edge = torch.where(mean > 0, edge / mean.clamp_min(1e-12), torch.ones_like(edge))  # a flat image: uniform weights
    return (1 + weight * edge) / (1 + weight)


def intensity_gradient_error(difference: torch.Tensor, loss: str = "l2") -> torch.Tensor:
    """Per sample (B,): the squared (or, with `loss` "l1", absolute) horizontal and vertical steps of the channel mean
    of `difference` (B, C, H, W), each averaged over the positions, summed.

    With `difference` a prediction's error this is a loss on the image's intensity gradient. A hue change at fixed
    saturation and value hardly moves the channel mean, while the geometry (an outline, a shading edge, the camera's
    turn) moves it, so this term pays the object and the camera more than the hues (`benchmarks/factor_probe.py`)."""
    intensity = difference.float().mean(1)
    steps = (torch.diff(intensity, dim=-1), torch.diff(intensity, dim=-2))
    measure = torch.abs if loss == "l1" else torch.square
    return sum(measure(step).mean(dim=(1, 2)) for step in steps)


def training_noise(shape: tuple, generator: torch.Generator, discount: float) -> torch.Tensor:
    """The noise `diffusion_loss` adds: Gaussian, plus with `discount` > 0 multi-resolution noise (Whitaker 2023).

    White noise hides an image's fine detail at far lower noise levels than its large-scale layout, which an
    average over many pixels still shows. Multi-resolution noise adds Gaussian noise drawn at 1/2, 1/4, ... of
    the size down to 1x1, upsampled bilinearly and weighted `discount ** level`, then scales each sample back to
    unit standard deviation, so that the layout is hidden too and must come from the tokens. With `discount` 0
    it is one `torch.randn` draw, the same bits as before the option existed."""
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if not discount:
        return noise
    batch, channels, height, width = shape
    level = 1
    while min(height, width) >> level:  # down to the level where the smaller side is one pixel
        coarse = torch.randn(batch, channels, height >> level, width >> level, generator=generator, device=generator.device)
        noise = noise + discount**level * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        level += 1
    return noise / noise.std(dim=(1, 2, 3), keepdim=True)


def diffusion_loss(unet, noise_scheduler, latents, tokens, generator, config: TrainingConfig, unet_config=None,
                   gradient_loss_weight: Optional[float] = None):
    """The plain diffusion loss of EncDiff: predict the noise (or v) added at a random timestep.

    `unet_config` says how the tokens enter the UNet (`unet_condition`); by default `unet.config`, which a
    wrapped UNet (DDP, torch.compile) does not have: pass the plain model's. `gradient_loss_weight` replaces
    `config.gradient_loss_weight` (the training step passes the scheduled weight)."""
    unet_config = unet.config if unet_config is None else unet_config
    gradient_loss_weight = config.gradient_loss_weight if gradient_loss_weight is None else gradient_loss_weight
    batch = latents.shape[0]
    noise = training_noise(tuple(latents.shape), generator, config.multires_noise_discount).to(latents)
    timesteps = sample_timesteps(batch, noise_scheduler.config.num_train_timesteps, generator, config).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, **unet_condition(unet_config, tokens)).sample
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    elif prediction_type == "sample":
        target = latents
    else:
        target = noise
    difference = prediction.float() - target.float()
    error = difference.abs() if config.loss == "l1" else difference**2
    if config.edge_loss_weight:
        error = error * edge_weights(latents, config.edge_loss_weight)
    per_sample = error.mean(dim=tuple(range(1, error.ndim)))
    if gradient_loss_weight:
        per_sample = per_sample + gradient_loss_weight * intensity_gradient_error(difference, config.loss)
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


@dataclass
class EncDiffParts:
    """Everything stage 2 trains and samples with, as prepared by accelerate."""

    accelerator: object
    encoder: torch.nn.Module
    unet: torch.nn.Module
    vae: Optional[torch.nn.Module]
    noise_scheduler: object
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema_unet: object
    ema_encoder: Optional[object]
    params: list
    """Encoder and UNet parameters, clipped together."""
    progress: RunProgress = dataclasses.field(default_factory=RunProgress)
    """The run's progress, which the learning rate and the intensity-gradient loss's weight follow (`schedules`)."""
    skip_dropout: Optional[SkipDropout] = None
    """The UNet's Skip Dropout hooks, or None when `skip_dropout` is 0."""
    unet_config: object = None
    """The plain UNet's config (how the tokens enter it)."""

    def unwrapped(self):
        """(encoder, unet) as plain diffusers models (`plain_model`)."""
        return plain_model(self.accelerator, self.encoder), plain_model(self.accelerator, self.unet)


def starting_pipeline(config: TrainingConfig):
    """The pipeline a run starts from: the preset's, freshly initialised under the run's seed, or (`init_from`) a
    trained one, loaded with the package's own classes."""
    if config.init_from is None:
        return build_pipeline(config.preset, seed=config.seed, conditioning=config.conditioning, token_mode=config.token_mode)
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    return ConceptDiffusionPipeline.from_pretrained(config.init_from)


def starting_first_stage(config: TrainingConfig, pipe):
    """The frozen first stage: the `init_from` pipeline's own (with its scaling factor), else `config.vae`'s."""
    if config.init_from is not None and pipe.vae is not None:
        return pipe.vae.eval().requires_grad_(False)
    return load_first_stage(config.vae, pipe.vae, config.preset)


def setup(config: TrainingConfig, accelerator, resume_state: Optional[dict]):
    """Build the models, data, optimizer and EMA; returns `(parts, dataset, ground_truth_or_None)`."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import EMAModel

    pipe = starting_pipeline(config)
    encoder, unet = pipe.concept_encoder, pipe.unet
    if config.released_zero_init and config.init_from is None:
        zero_init_like_released(unet)
    sample_size, in_channels = encoder.config.sample_size, encoder.config.in_channels
    dataset, ground_truth = load_training_data(config.data, sample_size, in_channels)
    check_image_size(dataset if ground_truth is None else ground_truth, sample_size, in_channels, config.data, config.preset)
    if config.held_out is not None:
        dataset = without_combinations(dataset, ground_truth, config.held_out)
    vae = starting_first_stage(config, pipe)
    if vae is not None:
        vae.to(accelerator.device)
    if vae is not None and config.init_from is None:
        scaling_factor = (resume_state["scaling_factor"] if resume_state is not None
                          else estimate_scaling_factor(vae, dataset, config, accelerator.device))
        vae.register_to_config(scaling_factor=scaling_factor)
    if config.prediction_type is not None:
        pipe.scheduler.register_to_config(prediction_type=config.prediction_type)

    encoder.train(config.train_encoder).requires_grad_(config.train_encoder), unet.train()
    trained_encoder = list(encoder.parameters()) if config.train_encoder else []
    params = trained_encoder + list(unet.parameters())
    groups = [{"params": trained_encoder, "lr": config.learning_rate * config.encoder_lr_multiplier},
              {"params": list(unet.parameters())}]
    # fused: one kernel for all parameters (and a few percent faster on CPU too)
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    progress = RunProgress()
    lr_scheduler = warmup_then_decay(optimizer, config.lr_warmup_steps * accelerator.num_processes, config.lr_decay_start, progress)
    ema_unet = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup, foreach=True,
                        model_cls=UNet2DConditionModel, model_config=unet.config)
    ema_encoder = (EMAModel(encoder.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup, foreach=True)
                   if config.ema_encoder else None)
    if config.train_encoder:
        encoder, unet, optimizer, lr_scheduler = accelerator.prepare(encoder, unet, optimizer, lr_scheduler)
    else:  # nothing to synchronise: every process holds the same frozen encoder
        encoder.to(accelerator.device)
        unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    for ema in (ema_unet, ema_encoder):
        if ema is not None:
            ema.to(accelerator.device)
            accelerator.register_for_checkpointing(ema)
    skip_dropout = SkipDropout(plain_model(accelerator, unet), config.skip_dropout) if config.skip_dropout else None
    parts = EncDiffParts(accelerator, encoder, unet, vae, DDPMScheduler.from_config(pipe.scheduler.config),
                         optimizer, lr_scheduler, ema_unet, ema_encoder, params, progress, skip_dropout, pipe.unet.config)
    return parts, dataset, ground_truth


def training_step(parts: EncDiffParts, config: TrainingConfig, batch: dict, number: int) -> dict:
    """One micro-batch of the diffusion loss; the optimizer and EMA step when gradients sync."""
    accelerator, vae = parts.accelerator, parts.vae
    images = images_to_device(batch, accelerator.device, config.data)
    generator = step_generator(config.seed, number, accelerator.process_index, accelerator.device)
    if parts.skip_dropout is not None:
        parts.skip_dropout.generator = generator  # the masks follow the step, so a resumed run draws the same ones
    with accelerator.accumulate(parts.encoder, parts.unet):
        with torch.no_grad():
            latents = images if vae is None else images_to_latents(vae, images) * vae.config.scaling_factor
        tokens = parts.encoder(images).tokens
        gradient_weight = gradient_loss_weight_at(config.gradient_loss_weight, config.gradient_loss_weight_start,
                                                  config.gradient_loss_weight_until, parts.progress.value)
        loss = diffusion_loss(parts.unet, parts.noise_scheduler, latents, tokens, generator, config, parts.unet_config,
                              gradient_weight)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(parts.params, config.max_grad_norm)
        parts.optimizer.step()
        parts.lr_scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        encoder, unet = parts.unwrapped()
        parts.ema_unet.step(unet.parameters())
        if parts.ema_encoder is not None:
            parts.ema_encoder.step(encoder.parameters())
    return {"loss": loss.detach()}


@contextlib.contextmanager
def ema_weights(parts: EncDiffParts):
    """The EMA weights swapped into the models for the block (main process only), the trained ones after."""
    encoder, unet = parts.unwrapped()
    swapped = [(parts.ema_unet, unet)] + ([(parts.ema_encoder, encoder)] if parts.ema_encoder is not None else [])
    for ema, model in swapped:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    try:
        yield
    finally:
        for ema, model in swapped:
            ema.restore(model.parameters())


def sampling_pipeline(parts: EncDiffParts):
    """A DDIM pipeline around the models being trained (it shares their weights)."""
    from diffusers import DDIMScheduler

    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    encoder, unet = parts.unwrapped()
    return ConceptDiffusionPipeline(concept_encoder=encoder, unet=unet, vae=parts.vae,
                                    scheduler=DDIMScheduler.from_config(parts.noise_scheduler.config))


def evaluate_and_draw(parts: EncDiffParts, config: TrainingConfig, ground_truth, swap_images, step: int, final: bool) -> dict:
    """Score the EMA models (fast metrics) and save a swap grid to samples/; returns the scores."""
    scores = {}
    encoder, unet = parts.unwrapped()
    with ema_weights(parts):
        pipe = sampling_pipeline(parts)
        pipe.set_progress_bar_config(disable=True)
        encoder.eval(), unet.eval()
        try:
            if ground_truth is not None and config.eval_metrics and (config.eval_final or not final):
                scores = score_during_training(pipe, ground_truth, config)
            grid = concept_swap_grid(pipe, swap_images[:4], swap_images[4:8], config.sample_steps, config.seed)
            name = "swap_final.png" if final else f"swap_{step:07d}.png"
            with atomic_path(os.path.join(config.output_dir, "samples", name), ".png") as temporary:
                grid.save(temporary)
        finally:
            encoder.train(config.train_encoder), unet.train()
    return scores


def metric_sizes(train_points: int) -> dict:
    """Metric arguments for `train_points` training points and half as many evaluation points."""
    eval_points = max(train_points // 2, 1)
    return {
        "factor_vae": {"num_train": train_points, "num_eval": eval_points, "num_variance_estimate": train_points,
                       "batch_size": min(64, train_points)},
        "dci": {"num_train": train_points, "num_test": eval_points},
        "mig": {"num_train": train_points},
    }


def score_during_training(pipe, ground_truth, config: TrainingConfig) -> dict:
    """`config.eval_metrics` in fast mode on `eval_samples` training points (half as many evaluation points), and
    how well the concepts predict each factor (`factor_accuracy.<factor>`, the concept-factor map on `eval_samples` images)."""
    from concept_diffusion.evaluation import evaluate
    from concept_diffusion.evaluation.concept_factors import map_concepts

    sizes, metrics = metric_sizes(config.eval_samples), scorable_metrics(ground_truth, config.eval_metrics)
    scores = evaluate(pipe, ground_truth, metrics=metrics, fast=True, seed=config.seed,
                      metric_kwargs={m: sizes[m] for m in metrics if m in sizes}, progress=False)
    concept_map = map_concepts(pipe, ground_truth, num_points=max(config.eval_samples, 30), seed=config.seed)
    return {**scores, **{f"factor_accuracy.{name}": float(accuracy) for name, accuracy in zip(concept_map["factors"], concept_map["accuracy"])}}


def trainer_state(parts: EncDiffParts, config: TrainingConfig) -> dict:
    """What a checkpoint needs besides accelerate's state: the config and the latents' scaling factor."""
    return {"config": config.to_dict(), "scaling_factor": parts.vae.config.scaling_factor if parts.vae is not None else None}


def save_final_pipeline(parts: EncDiffParts, config: TrainingConfig, metrics: dict, dataset) -> str:
    """The EMA weights as a pipeline in `output_dir/pipeline`, with a concept prior fitted on the training data
    and its model card (main process)."""
    pipeline_dir = os.path.join(config.output_dir, "pipeline")
    swap_grid = os.path.join(config.output_dir, "samples", "swap_final.png")
    final = sampling_pipeline(parts)  # the loop is over: the trained weights may be overwritten by the EMA's
    parts.ema_unet.copy_to(final.unet.parameters())
    if parts.ema_encoder is not None:
        parts.ema_encoder.copy_to(final.concept_encoder.parameters())
    final.concept_encoder.eval(), final.unet.eval()
    attach_prior(final, prior_of_training_data(final.concept_encoder, dataset, config, parts.accelerator.device))
    final.save_pretrained(pipeline_dir)
    write_run_card(final, pipeline_dir, config, metrics, swap_grid)
    if config.push_to_hub:
        final.push_to_hub(config.push_to_hub, metrics=metrics, dataset=config.data,
                          training_config=config.to_dict(), swap_grid=swap_grid)
    return pipeline_dir


def finalize(parts: EncDiffParts, config: TrainingConfig, loop: LoopResult, dataset, ground_truth, swap_images, log_file) -> TrainingResult:
    """Check the replicas agree, save the last checkpoint, then (main process) score, save, log and plot."""
    from accelerate.utils import gather_object

    accelerator, step = parts.accelerator, loop.step
    log_path = os.path.join(config.output_dir, "log.jsonl")
    replica_digests = gather_object([weights_digest(*parts.unwrapped())])
    if len(set(replica_digests)) > 1:
        raise RuntimeError(f"the processes ended with different weights ({replica_digests}): a distributed setup bug")
    last_checkpoint = save_checkpoint(accelerator, config.output_dir, step, trainer_state(parts, config), config.checkpoints_total_limit)
    pipeline_dir, metrics = os.path.join(config.output_dir, "pipeline"), {}
    images_seen = step * global_batch(accelerator, config)
    if accelerator.is_main_process:
        metrics = evaluate_and_draw(parts, config, ground_truth, swap_images, step, final=True)
        save_final_pipeline(parts, config, metrics, dataset)
        record = {"step": step, "images_seen": images_seen, "seconds": round(loop.seconds, 3), "final": True, **metrics}
        write_record(accelerator, log_file, record)
        write_json(os.path.join(config.output_dir, "run.json"), {
            **record, "num_processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
            "device": torch.cuda.get_device_name(accelerator.device) if accelerator.device.type == "cuda" else accelerator.device.type,
            "replica_digests": replica_digests, "pipeline": pipeline_dir, "checkpoint": last_checkpoint, "config": config.to_dict()})
        plot_curves(log_path, os.path.join(config.output_dir, "curves.png"))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingResult(pipeline_dir=pipeline_dir, step=step, images_seen=images_seen, seconds=loop.seconds,
                          metrics=metrics, log_file=log_path)


def train(config: TrainingConfig) -> TrainingResult:
    """Train EncDiff as `config` says; returns where the final pipeline is and its metrics.

    Example:
        >>> from concept_diffusion.training import TrainingConfig, build_config, train
        >>> result = train(build_config(TrainingConfig, {"preset": "cpu", "max_minutes": 10}))
    """
    accelerator = start_run(config)
    resume_path, resume_state = resume_point(config)
    parts, dataset, ground_truth = setup(config, accelerator, resume_state)
    if config.compile:
        parts.encoder, parts.unet = compile_models([parts.encoder, parts.unet], accelerator.device,
                                                   accelerator.num_processes, config.gradient_accumulation_steps)
    step = continue_run(accelerator, config, resume_path, resume_state, "concept-diffusion")
    if ground_truth is None and config.eval_metrics:
        logger.warning("%s has no factors: the metrics (%s) are skipped", config.data, ", ".join(config.eval_metrics))
    skipped = [m for m in config.eval_metrics if m not in scorable_metrics(ground_truth, config.eval_metrics)]
    if ground_truth is not None and skipped:
        logger.warning("%s is not a full factor grid: %s need one and are skipped; the pair metrics (dci, mig, sap, "
                       "modularity) score it", config.data, ", ".join(skipped))
    # the swap grids' images, as the pipeline takes them: numpy (B, H, W, C) in [0, 1]
    fixed = next(iter(batch_loader(dataset, 8, seed=config.seed + 104729)))["images"]
    swap_images = ((fixed.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    stage = Stage(
        name="training EncDiff",
        step=functools.partial(training_step, parts, config),
        trainer_state=functools.partial(trainer_state, parts, config),
        lr_scheduler=parts.lr_scheduler,
        evaluate=functools.partial(evaluate_and_draw, parts, config, ground_truth, swap_images, final=False),
        eval_every=config.eval_every,
        progress=parts.progress,
    )
    with open_log(accelerator, config) as log_file:
        loop = run_loop(accelerator, config, stage, step_loader(dataset, config, accelerator, step), step, resume_path, log_file)
        return finalize(parts, config, loop, dataset, ground_truth, swap_images, log_file)


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


def write_run_card(pipe, folder: str, config: TrainingConfig, metrics: dict, swap_grid_path: str) -> None:
    """The saved pipeline's model card: metrics, training configuration and the swap grid."""
    from concept_diffusion.hub.cards import render_model_card, write_swap_grid
    from concept_diffusion.hub.push import write_card

    swap_grid = write_swap_grid(swap_grid_path, folder)
    name = os.path.basename(os.path.normpath(config.output_dir)) or "encdiff"
    card = render_model_card(pipe, f"your-name/{name}", metrics=metrics, dataset=config.data,
                             training_config=config.to_dict(), swap_grid=swap_grid)
    write_card(card, folder)
