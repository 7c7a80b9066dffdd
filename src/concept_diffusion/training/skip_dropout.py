"""Skip Dropout (Jun et al., "Disentangling Disentangled Representations", WACV 2025).

A UNet can copy detail from its noisy input to its output through the skip connections and never
ask the concept tokens for it. Skip Dropout drops whole channels of every skip connection (each
with probability p, the rest scaled by 1/(1-p)) before the decoder concatenates them, during
training only, so that the decoder must rely on what comes through the bottleneck and the tokens.
At inference the UNet is unchanged.

It is attached with forward pre-hooks on the UNet's up blocks, which receive the skips as
`res_hidden_states_tuple`: the diffusers UNet itself is not copied or changed, and a saved model is
an ordinary one.
"""

from typing import Optional

import torch


class SkipDropout:
    """Channel dropout with probability `p` on the skip connections of a diffusers `UNet2DConditionModel`,
    active while the UNet is in training mode.

    The masks are drawn from `generator` (set it before each step, e.g. to the step's generator, so
    that a resumed run draws the same masks) or from torch's global generator when it is None.

    Example:
        >>> skip_dropout = SkipDropout(unet, p=0.2)
        >>> skip_dropout.generator = torch.Generator().manual_seed(step)
        >>> loss = unet(noisy, t, encoder_hidden_states=tokens).sample.square().mean()   # skips dropped
        >>> skip_dropout.remove()
    """

    def __init__(self, unet: torch.nn.Module, p: float):
        if not 0 <= p < 1:
            raise ValueError(f"skip_dropout must be in [0, 1), got {p}: 0 turns it off, the paper's configs use 0.2")
        self.p = p
        self.generator: Optional[torch.Generator] = None
        self.handles = [block.register_forward_pre_hook(self._drop_skips, with_kwargs=True) for block in unet.up_blocks]

    def _drop_skips(self, block, args, kwargs):
        if not block.training or self.p == 0:
            return None
        kwargs["res_hidden_states_tuple"] = tuple(self.drop(skip) for skip in kwargs["res_hidden_states_tuple"])
        return args, kwargs

    def drop(self, skip: torch.Tensor) -> torch.Tensor:
        """`skip` (B, C, H, W) with each (image, channel) zeroed with probability p, the rest scaled by 1/(1-p)."""
        keep = torch.rand(skip.shape[:2], generator=self.generator, device=skip.device) >= self.p
        return skip * (keep.to(skip.dtype) / (1 - self.p))[..., None, None]

    def remove(self) -> None:
        """Detach the hooks: the UNet behaves as before."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
