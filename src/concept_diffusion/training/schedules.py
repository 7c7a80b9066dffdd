"""Schedules over a run's progress: the learning rate's decay and the intensity-gradient loss's weight.

A run's progress goes from 0 to 1 as it nears its stop: steps over `max_steps`, or time over
`max_minutes`, whichever is further. A run that stops on steps follows the same schedule on every
machine (and when resumed); one that stops on time follows the clock, as its length does.
"""

import math
from dataclasses import dataclass
from typing import Optional


@dataclass
class RunProgress:
    """The current progress, shared by the loop (which sets it before each step) and the schedules."""

    value: float = 0.0


def run_progress(max_steps: Optional[int], max_minutes: Optional[float], step: int, seconds: float) -> float:
    """How far a run is toward its stop, in [0, 1]: `step / max_steps` or `seconds / (60 * max_minutes)`, the larger."""
    fractions = [0.0]
    if max_steps:
        fractions.append(step / max_steps)
    if max_minutes:
        fractions.append(seconds / (60 * max_minutes))
    return min(max(fractions), 1.0)


def cosine_decay(progress: float, start: float) -> float:
    """1 until `start`, then a half cosine down to 0 at progress 1 (`start` >= 1: always 1)."""
    if start >= 1 or progress <= start:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min((progress - start) / (1 - start), 1.0)))


def warmup_then_decay(optimizer, warmup_steps: int, decay_start: float, progress: RunProgress):
    """A `LambdaLR`: linear warm-up over `warmup_steps` scheduler steps (diffusers' "constant_with_warmup"), then
    constant until `decay_start` of the run's progress, then `cosine_decay` to 0 at its end."""
    from torch.optim.lr_scheduler import LambdaLR

    def factor(scheduler_step: int) -> float:
        warmup = scheduler_step / max(1.0, warmup_steps) if scheduler_step < warmup_steps else 1.0
        return warmup * cosine_decay(progress.value, decay_start)

    return LambdaLR(optimizer, factor)


def gradient_loss_weight_at(weight: float, start_weight: Optional[float], until: float, progress: float) -> float:
    """The intensity-gradient loss's weight at `progress`: `start_weight` at 0, moving linearly to `weight` at `until`,
    then `weight` (no `start_weight`: always `weight`)."""
    if start_weight is None or progress >= until:
        return weight
    return start_weight + (weight - start_weight) * progress / until
