import math

import torch

from concept_diffusion.training.discriminator import (
    PatchDiscriminator,
    adaptive_adversarial_weight,
    hinge_discriminator_loss,
    psnr,
)


def test_patch_discriminator_scores_patches_and_has_the_released_layout():
    discriminator = PatchDiscriminator(in_channels=3, base_channels=8, num_layers=3)
    logits = discriminator(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8, then two 4x4 stride-1 convs
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules()) == 3


def test_hinge_loss_is_zero_only_when_real_and_fake_are_separated_by_the_margin():
    assert hinge_discriminator_loss(torch.full((4,), 1.0), torch.full((4,), -1.0)) == 0
    assert torch.isclose(hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)), torch.tensor(1.0))


def test_adaptive_weight_balances_the_two_gradients():
    layer = torch.nn.Parameter(torch.ones(3))
    reconstruction, generator = (layer * 4.0).sum(), (layer * 2.0).sum()
    weight = adaptive_adversarial_weight(reconstruction, generator, layer, scale=0.75)
    assert torch.isclose(weight, torch.tensor(0.75 * 2.0), rtol=1e-3)
    assert not weight.requires_grad


def test_psnr_of_a_known_error():
    images = torch.zeros(2, 3, 8, 8)
    assert abs(psnr(images + 0.2, images).item() - 10 * math.log10(4.0 / 0.04)) < 1e-4
