"""The released EncDiff UNet's zero initialisation, applied to a diffusers `UNet2DConditionModel`.

The released `openaimodel_enc.py` wraps three kinds of layer in `zero_module`: the output conv of
every ResBlock, the `proj_out` of every SpatialTransformer and the UNet's final conv. Each block
then starts as the identity (the residual branch adds zero) and the UNet's first prediction is zero.
diffusers initialises those layers like any other, so a faithful preset applies this once, before
training.
"""

import torch
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel


@torch.no_grad()
def zero_init_like_released(unet: torch.nn.Module) -> torch.nn.Module:
    """Zero the weights and biases of each ResBlock's `conv2`, each transformer's `proj_out` and `conv_out`.

    Returns `unet` (changed in place), so that `zero_init_like_released(build_pipeline(...).unet)` reads well.
    """
    zeroed = [unet.conv_out]
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            zeroed.append(module.conv2)
        elif isinstance(module, Transformer2DModel):
            zeroed.append(module.proj_out)
    for layer in zeroed:
        for parameter in layer.parameters():
            parameter.zero_()
    return unet
