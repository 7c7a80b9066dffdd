"""Stage 1: the first-stage autoencoder (diffusers `VQModel` or `AutoencoderKL`) of a latent preset.

Trained with an L1 or L2 reconstruction loss, the codebook loss (VQ) or a KL term (KL), and a patch
discriminator's hinge loss with the adaptive weight of the released first stage (LPIPS, the released
perceptual term, needs a pretrained VGG that is not reachable here; see `discriminator.py`). The result
is a diffusers folder that stage 2 takes as `vae=...`; the log records each batch's PSNR.
"""

import functools
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from concept_diffusion.atomic import atomic_directory
from concept_diffusion.presets import build_pipeline
from concept_diffusion.training.checkpoints import save_checkpoint
from concept_diffusion.training.config import AutoencoderTrainingConfig
from concept_diffusion.training.data import batch_loader, check_image_size, load_training_data, step_generator
from concept_diffusion.training.discriminator import (
    PatchDiscriminator,
    adaptive_adversarial_weight,
    hinge_discriminator_loss,
    psnr,
)
from concept_diffusion.training.runtime import (
    Stage,
    continue_run,
    images_to_device,
    open_log,
    plain_model,
    resume_point,
    run_loop,
    start_run,
    step_loader,
)

KL_SCALE = 1e-6  # the KL term's usual weight for latent-diffusion autoencoders


class AutoencoderWithLoss(torch.nn.Module):
    """The vae and its training loss in one forward, so that DDP sees (and syncs) every gradient."""

    def __init__(self, vae, config: AutoencoderTrainingConfig):
        super().__init__()
        self.vae, self.config = vae, config

    def forward(self, images: torch.Tensor, generator: torch.Generator):
        """Returns (reconstruction, pixel reconstruction loss, codebook (VQModel) or KL (AutoencoderKL) term)."""
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
        return reconstruction, reconstruction_loss, regularization


def setup(config: AutoencoderTrainingConfig, accelerator):
    """Build the vae with its loss, the optimizer, the discriminator (or None) and the data."""
    from diffusers.optimization import get_scheduler

    vae = build_pipeline(config.preset, seed=config.seed).vae
    if vae is None:
        raise ValueError(f"the preset {config.preset!r} diffuses in pixel space: it has no first stage to train")
    dataset, ground_truth = load_training_data(config.data, vae.config.sample_size, vae.config.in_channels)
    check_image_size(dataset if ground_truth is None else ground_truth, vae.config.sample_size, vae.config.in_channels,
                     config.data, config.preset)
    if config.codebook_init == "data":
        if not hasattr(vae, "quantize"):
            raise ValueError(f"codebook_init='data' needs a VQModel first stage; the preset {config.preset!r} has a "
                             f"{type(vae).__name__}: leave codebook_init at 'uniform'")
        init_codebook_from_data(vae, dataset, config)
    model = AutoencoderWithLoss(vae.train(), config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, fused=True)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    adversary = None
    if config.discriminator_weight > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            discriminator = PatchDiscriminator(in_channels=vae.config.in_channels)
        # Adam with betas (0.5, 0.9), as the released first stage trains both of its players.
        discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate, betas=(0.5, 0.9))
        adversary = Adversary(*accelerator.prepare(discriminator, discriminator_optimizer))
    return model, optimizer, lr_scheduler, adversary, dataset


@torch.no_grad()
def init_codebook_from_data(vae, dataset, config: AutoencoderTrainingConfig) -> None:
    """Set each code of the VQ codebook to a latent vector of the untrained encoder, drawn from the first batches.

    diffusers' codebook (like the released one) starts uniform in +-1/num_codes, far from the encoder's
    latents (of order 1): every latent is quantised to a near-zero code, the decoder sees an almost constant
    input, and the codebook needs thousands of steps to reach the latents' scale. Codes taken from the
    latents themselves are in use from the first step. Every process draws the same codes (same batches, seed).
    """
    quantizer = vae.quantize
    loader = batch_loader(dataset, config.batch_size, seed=config.seed + 7919)
    vectors, count = [], 0
    for batch in loader:
        latents = vae.encode(batch["images"].to(vae.device, vae.dtype)).latents  # (B, d, h, w), before quantisation
        vectors.append(latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]))
        count += vectors[-1].shape[0]
        if count >= quantizer.n_e:
            break
    vectors = torch.cat(vectors)
    generator = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(vectors.shape[0], generator=generator)[: quantizer.n_e]
    quantizer.embedding.weight.copy_(vectors[chosen.to(vectors.device)])


@dataclass
class Adversary:
    """The patch discriminator and its optimizer, as `accelerator.prepare` returned them."""

    discriminator: torch.nn.Module
    optimizer: torch.optim.Optimizer


def training_step(accelerator, model, optimizer, lr_scheduler, adversary: Optional[Adversary], config: AutoencoderTrainingConfig,
                  batch: dict, number: int) -> dict:
    """One micro-batch: the autoencoder's step, then (with a discriminator) the discriminator's step."""
    images = images_to_device(batch, accelerator.device, config.data)
    adversarial = adversary is not None and number >= config.discriminator_start
    with accelerator.accumulate(model):
        reconstruction, reconstruction_loss, regularization = model(
            images, step_generator(config.seed, number, accelerator.process_index, accelerator.device))
        loss = reconstruction_loss + config.regularization_weight * regularization
        outputs = {"reconstruction_loss": reconstruction_loss.detach(), "psnr": psnr(reconstruction.detach(), images)}
        if adversarial:
            generator_loss = -adversary.discriminator(reconstruction).mean()
            last_layer = plain_model(accelerator, model).vae.decoder.conv_out.weight
            weight = adaptive_adversarial_weight(reconstruction_loss, generator_loss, last_layer, config.discriminator_weight)
            loss = loss + weight * generator_loss
            outputs.update(generator_loss=generator_loss.detach(), adversarial_weight=weight)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if adversarial:
        outputs["discriminator_loss"] = discriminator_step(accelerator, adversary, images, reconstruction.detach())
    return {"loss": loss.detach(), **outputs}


def discriminator_step(accelerator, adversary: Adversary, images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """One hinge-loss step of the discriminator on real images against this step's reconstructions."""
    adversary.optimizer.zero_grad(set_to_none=True)  # drop what the autoencoder's loss left on its weights
    # One forward over real and reconstructed images: one DDP forward per backward.
    logits = adversary.discriminator(torch.cat([images, reconstruction]))
    loss = hinge_discriminator_loss(*logits.chunk(2))
    accelerator.backward(loss)
    adversary.optimizer.step()
    adversary.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def trainer_state(config: AutoencoderTrainingConfig) -> dict:
    """What a checkpoint needs besides accelerate's state: the config that made it."""
    return {"config": config.to_dict()}


def train_autoencoder(config: AutoencoderTrainingConfig) -> str:
    """Train the preset's first stage on `config.data`; returns the folder of the saved vae.

    Example:
        >>> from concept_diffusion.training import AutoencoderTrainingConfig, build_config, train_autoencoder
        >>> vae_dir = train_autoencoder(build_config(AutoencoderTrainingConfig, {"preset": "shapes3d", "max_steps": 5000}))
    """
    accelerator = start_run(config)
    resume_path, resume_state = resume_point(config)
    model, optimizer, lr_scheduler, adversary, dataset = setup(config, accelerator)
    step = continue_run(accelerator, config, resume_path, resume_state, "concept-diffusion-vae")
    stage = Stage(name="training first stage", lr_scheduler=lr_scheduler,
                  step=functools.partial(training_step, accelerator, model, optimizer, lr_scheduler, adversary, config),
                  trainer_state=functools.partial(trainer_state, config))
    with open_log(accelerator, config) as log_file:
        loop = run_loop(accelerator, config, stage, step_loader(dataset, config, accelerator, step), step, resume_path, log_file)
    save_checkpoint(accelerator, config.output_dir, loop.step, stage.trainer_state(), config.checkpoints_total_limit)
    vae_dir = os.path.join(config.output_dir, "vae")
    if accelerator.is_main_process:
        with atomic_directory(vae_dir) as staging:
            plain_model(accelerator, model).vae.eval().save_pretrained(staging, safe_serialization=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return vae_dir
