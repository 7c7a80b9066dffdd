"""beta-VAE and beta-TCVAE with EncDiff's encoder backbone, for an honest comparison.

Both baselines encode with the same `ConceptEncoder` backbone EncDiff uses (four 4x4 stride-2
convolutions with BatchNorm and ReLU, two residual blocks, a linear layer), whose linear layer
emits 2 * z_dim numbers: the posterior mean and log-variance of z_dim latents. The decoder mirrors
the backbone. Images are in [-1, 1]; the decoder is Gaussian with a fixed variance, so the
reconstruction term is the per-image sum of squared errors (the usual choice for Shapes3D). The
representation scored by the metrics is the posterior mean, as in disentanglement_lib.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from concept_diffusion.models import ConceptEncoder
from concept_diffusion.models.concept_encoder import ResidualBlock

KINDS = ("beta_vae", "beta_tcvae")
DEFAULT_BETA = {"beta_vae": 4.0, "beta_tcvae": 6.0}
LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAELoss:
    """The terms of one training step, each averaged over the batch.

    `loss` is what is minimised; `kl` is the analytic KL(q(z|x) || p(z)) for both kinds. For the
    beta-TCVAE, `mutual_information`, `total_correlation` and `dimension_wise_kl` are Chen et al.'s
    decomposition of the aggregate KL, estimated with minibatch-weighted sampling (None otherwise).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    mutual_information: Optional[torch.Tensor] = None
    total_correlation: Optional[torch.Tensor] = None
    dimension_wise_kl: Optional[torch.Tensor] = None

    def scalars(self) -> dict:
        """The terms that were computed, as floats (for the log)."""
        return {name: float(value.detach()) for name, value in vars(self).items() if value is not None}


class ConvDecoder(nn.Module):
    """The encoder backbone mirrored: Linear, two residual blocks, four 4x4 stride-2 transposed convolutions."""

    def __init__(self, z_dim: int, sample_size: int, width: int, out_channels: int = 3):
        super().__init__()
        self.width, self.side = width, sample_size // 16
        self.from_latents = nn.Linear(z_dim, width * self.side**2)
        layers = [ResidualBlock(width), ResidualBlock(width), nn.ReLU()]
        for _ in range(3):
            layers += [nn.ConvTranspose2d(width, width, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(width, out_channels, kernel_size=4, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = self.from_latents(z).view(-1, self.width, self.side, self.side)
        return self.layers(hidden)


def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(samples; mean, exp(log_variance))."""
    return -0.5 * (LOG_2PI + log_variance + (samples - mean) ** 2 * torch.exp(-log_variance))


class GaussianVAE(nn.Module):
    r"""A VAE trained as a beta-VAE or a beta-TCVAE, with EncDiff's encoder backbone.

    - "beta_vae" (Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
      Variational Framework", ICLR 2017): reconstruction + beta * KL(q(z|x) || N(0, I)).
    - "beta_tcvae" (Chen et al., "Isolating Sources of Disentanglement in Variational
      Autoencoders", NeurIPS 2018): reconstruction + MI + beta * TC + dimension-wise KL, the
      aggregate KL split into index-code mutual information, total correlation and dimension-wise
      KL, each estimated by minibatch-weighted sampling, which needs the data set's size.

    Args:
        kind: "beta_vae" or "beta_tcvae".
        sample_size: height and width of the images; a multiple of 16.
        z_dim: latents; use the EncDiff preset's `num_concepts` so both representations have one size.
        width: channels of encoder and decoder; use the EncDiff preset's encoder width.
        beta: the KL weight (beta-VAE, default 4) or the TC weight (beta-TCVAE, default 6).
        dataset_size: images in the training data (beta-TCVAE only; minibatch-weighted sampling).
        in_channels: image channels.

    Example:
        >>> model = GaussianVAE("beta_tcvae", sample_size=32, z_dim=10, width=64, dataset_size=480000)
        >>> terms = model.loss(torch.zeros(4, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> terms.total_correlation.shape
        torch.Size([])
    """

    def __init__(self, kind: str, sample_size: int, z_dim: int, width: int, beta: Optional[float] = None,
                 dataset_size: Optional[int] = None, in_channels: int = 3):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "beta_tcvae" and not (dataset_size and dataset_size > 0):
            raise ValueError(f"dataset_size must be the number of training images for a beta_tcvae, got {dataset_size!r}: pass len(dataset)")
        self.kind, self.z_dim, self.dataset_size = kind, z_dim, dataset_size
        self.beta = DEFAULT_BETA[kind] if beta is None else float(beta)
        # token_dim=1: the token MLPs are unused here; `.concepts` carries the 2 * z_dim posterior statistics.
        self.encoder = ConceptEncoder(in_channels=in_channels, sample_size=sample_size, num_concepts=2 * z_dim,
                                      token_dim=1, width=width, token_mode="scalar")
        self.decoder = ConvDecoder(z_dim, sample_size, width, in_channels)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance `(B, z_dim)` each of q(z|x) for images `(B, C, H, W)` in [-1, 1]."""
        statistics = self.encoder(images).concepts
        return statistics[:, : self.z_dim], statistics[:, self.z_dim :]

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: the deterministic reconstruction, in [-1, 1] units."""
        return self.decoder(self.posterior(images)[0])

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> VAELoss:
        """The training objective for a batch; `generator` (on the model's device) draws the reparameterisation noise."""
        mean, log_variance = self.posterior(images)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean)
        z = mean + torch.exp(0.5 * log_variance) * noise
        reconstruction = ((self.decoder(z) - images) ** 2).flatten(1).sum(dim=1).mean()
        kl = (0.5 * (mean**2 + log_variance.exp() - 1 - log_variance)).sum(dim=1).mean()
        if self.kind == "beta_vae":
            return VAELoss(loss=reconstruction + self.beta * kl, reconstruction=reconstruction, kl=kl)
        mutual_information, total_correlation, dimension_wise_kl = self.kl_decomposition(z, mean, log_variance)
        loss = reconstruction + mutual_information + self.beta * total_correlation + dimension_wise_kl
        return VAELoss(loss=loss, reconstruction=reconstruction, kl=kl, mutual_information=mutual_information,
                       total_correlation=total_correlation, dimension_wise_kl=dimension_wise_kl)

    def kl_decomposition(self, z, mean, log_variance):
        """Chen et al.'s minibatch-weighted sampling estimates of (MI, TC, dimension-wise KL), batch means.

        log q(z) ~ logsumexp_j log q(z | x_j) - log(B * N) for a batch of B out of N images, and the
        same per dimension for the product of the marginals.
        """
        batch = z.shape[0]
        log_q_pairs = gaussian_log_density(z[:, None], mean[None], log_variance[None])  # (B, B, z_dim): z_i under q(.|x_j)
        log_normaliser = math.log(batch * self.dataset_size)
        log_q_z_given_x = gaussian_log_density(z, mean, log_variance).sum(dim=1)
        log_q_z = torch.logsumexp(log_q_pairs.sum(dim=2), dim=1) - log_normaliser
        log_prod_q_zi = (torch.logsumexp(log_q_pairs, dim=1) - log_normaliser).sum(dim=1)
        log_p_z = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
        return ((log_q_z_given_x - log_q_z).mean(), (log_q_z - log_prod_q_zi).mean(), (log_prod_q_zi - log_p_z).mean())
