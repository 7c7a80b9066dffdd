"""The adversarial half of the first-stage loss: a patch discriminator, its hinge loss and the adaptive weight.

The released first stage (taming-transformers' `VQLPIPSWithDiscriminator`, configs/autoencoder/*_vq_4_16.yaml)
trains the VQ autoencoder with L1 + LPIPS + codebook loss + a PatchGAN discriminator (3 strided layers,
64 base channels, BatchNorm, hinge loss, `disc_weight` 0.75 from step 0). LPIPS needs a pretrained VGG
that is not reachable here, so stage 1 keeps L1 + codebook loss + this discriminator: the discriminator is
what sharpens textures and edges beyond what a pixel loss rewards.
"""

import torch
from torch import nn
from torch.nn import functional as F


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches of an image as real or reconstructed (Isola et al. 2017, PatchGAN).

    `num_layers` stride-2 4x4 convolutions double the channels from `base_channels` (capped at 8x);
    one stride-1 layer and a 1-channel output conv follow. Weights start as N(0, 0.02), BatchNorm
    scales as N(1, 0.02), as in the released code.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = base_channels
        for layer in range(1, num_layers + 1):
            out_channels = base_channels * min(2**layer, 8)
            stride = 2 if layer < num_layers else 1
            layers += [nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2)]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch logits `(B, 1, h, w)` for images `(B, C, H, W)` in [-1, 1]."""
        return self.layers(images)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - real) + mean relu(1 + fake)): the discriminator's hinge loss."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_adversarial_weight(reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor,
                                last_layer: torch.Tensor, scale: float) -> torch.Tensor:
    """`scale` x |grad rec| / |grad gen| at the decoder's last layer (Esser et al. 2021), detached and clamped.

    It keeps the adversarial gradient at a fixed ratio to the reconstruction gradient, whatever their scales.
    """
    reconstruction_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    generator_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    weight = reconstruction_grad.norm() / (generator_grad.norm() + 1e-4)
    return (weight.clamp(0.0, 1e4) * scale).detach()


def psnr(reconstructions: torch.Tensor, images: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak range 2), averaged over the batch,
    or one value per image with `reduce=False`."""
    mse = (reconstructions.float().clamp(-1, 1) - images.float()).pow(2).flatten(1).mean(1)
    values = 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
    return values.mean() if reduce else values
