"""Stage 1: the first-stage autoencoder (diffusers `VQModel` or `AutoencoderKL`) of a latent preset.

Trained with an L1 or L2 reconstruction loss plus the codebook loss (VQ) or a KL term (KL); the
result is a diffusers folder that stage 2 takes as `vae=...`.
"""

import json
import math
import os
import shutil
import time

import torch
import torch.nn.functional as F

from concept_diffusion.presets import build_pipeline
from concept_diffusion.training.config import AutoencoderTrainingConfig
from concept_diffusion.training.data import batch_loader, check_image_size, load_training_data, step_generator
from concept_diffusion.training.trainer import TrainingDiverged, check_writable, make_accelerator

KL_SCALE = 1e-6  # the KL term's usual weight for latent-diffusion autoencoders


class AutoencoderWithLoss(torch.nn.Module):
    """The vae and its training loss in one forward, so that DDP sees (and syncs) every gradient."""

    def __init__(self, vae, config: AutoencoderTrainingConfig):
        super().__init__()
        self.vae, self.config = vae, config

    def forward(self, images: torch.Tensor, generator: torch.Generator):
        """Reconstruction loss plus the codebook (VQModel) or KL (AutoencoderKL) term; returns (loss, reconstruction loss)."""
        if hasattr(self.vae, "quantize"):
            decoded = self.vae.decode(self.vae.encode(images).latents)
            reconstruction, regularization = decoded.sample, decoded.commit_loss.mean()
        else:
            posterior = self.vae.encode(images).latent_dist
            noise = torch.randn(posterior.mean.shape, generator=generator, device=generator.device).to(posterior.mean)
            reconstruction = self.vae.decode(posterior.mean + posterior.std * noise).sample
            regularization = KL_SCALE * posterior.kl().mean()
        if self.config.reconstruction_loss == "l1":
            reconstruction_loss = F.l1_loss(reconstruction.float(), images.float())
        else:
            reconstruction_loss = F.mse_loss(reconstruction.float(), images.float())
        return reconstruction_loss + self.config.regularization_weight * regularization, reconstruction_loss


def train_autoencoder(config: AutoencoderTrainingConfig) -> str:
    """Train the preset's first stage on `config.data`; returns the folder of the saved vae.

    Example:
        >>> from concept_diffusion.training import AutoencoderTrainingConfig, build_config, train_autoencoder
        >>> vae_dir = train_autoencoder(build_config(AutoencoderTrainingConfig, {"preset": "shapes3d", "max_steps": 5000}))
    """
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    check_writable(config.output_dir)
    accelerator = make_accelerator(allow_tf32=config.allow_tf32, mixed_precision=config.mixed_precision)
    vae = build_pipeline(config.preset, seed=config.seed).vae
    if vae is None:
        raise ValueError(f"the preset {config.preset!r} diffuses in pixel space: it has no first stage to train")
    dataset, ground_truth = load_training_data(config.data, vae.config.sample_size)
    check_image_size(dataset if ground_truth is None else ground_truth, vae.config.sample_size, vae.config.in_channels,
                     config.data, config.preset)
    model = AutoencoderWithLoss(vae.train(), config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, fused=True)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    loader = batch_loader(dataset, config.batch_size, config.seed, num_workers=config.num_workers,
                          num_processes=accelerator.num_processes, process_index=accelerator.process_index)
    log_path = os.path.join(config.output_dir, "log.jsonl")
    progress = tqdm(total=config.max_steps, desc="training first stage", unit="step", disable=not accelerator.is_local_main_process)
    started = time.monotonic()
    with open(log_path, "a") if accelerator.is_main_process else open(os.devnull, "w") as log_file:
        for step, batch in zip(range(1, config.max_steps + 1), loader):
            images = batch["images"].to(accelerator.device, non_blocking=True)
            loss, reconstruction_loss = model(images, step_generator(config.seed, step, accelerator.process_index,
                                                                     accelerator.device))
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.update(1)
            if step % config.log_every == 0 or step == config.max_steps:  # the only host syncs
                record = {"step": step, "images_seen": step * config.batch_size * accelerator.num_processes,
                          "seconds": round(time.monotonic() - started, 3), "loss": loss.item(),
                          "reconstruction_loss": reconstruction_loss.item()}
                if not math.isfinite(record["loss"]):
                    raise TrainingDiverged(f"the first-stage loss became {record['loss']} by step {step}: "
                                           f"lower learning_rate (now {config.learning_rate})")
                progress.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                log_file.write(json.dumps(record) + "\n")
    progress.close()
    vae_dir = os.path.join(config.output_dir, "vae")
    if accelerator.is_main_process:
        staging = vae_dir + ".incomplete"
        shutil.rmtree(staging, ignore_errors=True)
        accelerator.unwrap_model(model).vae.eval().save_pretrained(staging, safe_serialization=True)
        shutil.rmtree(vae_dir, ignore_errors=True)
        os.replace(staging, vae_dir)
    accelerator.wait_for_everyone()
    return vae_dir
