"""Learning-rate schedules for fine-tuning: slanted triangular (ULMFiT) and linear warm-up + linear decay.

Each schedule is a pure function ``lr(step)`` (for plotting, and for the exercise check) plus a factory that
wraps it in ``torch.optim.lr_scheduler.LambdaLR``. LambdaLR multiplies each parameter group's own starting
``lr`` by the schedule's factor, so discriminative learning rates keep their ratios at every step.
Call ``scheduler.step()`` once after every ``optimizer.step()``; ``step`` counts optimizer updates from 0.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def _check_step(step: float, total_steps: int) -> None:
    """Shared validation: ``total_steps >= 1`` and ``step >= 0``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def slanted_triangular_lr(
    step: float, total_steps: int, lr_max: float = 1.0, cut_frac: float = 0.1, ratio: float = 32.0
) -> float:
    """Slanted triangular learning rate (ULMFiT, Howard & Ruder 2018, Sec. 3.2, eq. 3).

    cut = floor(T * cut_frac);  p = t / cut if t < cut, else 1 - (t - cut) / (T - cut);
    lr = lr_max * (1 + p * (ratio - 1)) / ratio.
    A short linear climb from lr_max / ratio to lr_max at step ``cut``, then a long linear decay back to
    lr_max / ratio at step T (later steps keep that value). The paper writes the decay's length as
    cut * (1 / cut_frac - 1), which equals T - cut when T * cut_frac is whole; T - cut also ends exactly at
    lr_max / ratio when it is not (the paper's form then dips below it, below zero when T * cut_frac is small).
    With the default ``lr_max=1`` the value is the factor LambdaLR needs.
    """
    _check_step(step, total_steps)
    if not 0 < cut_frac < 1:
        raise ValueError(f"cut_frac must be in (0, 1), got {cut_frac}")
    if ratio < 1:
        raise ValueError(f"ratio (lr_max / lowest lr) must be >= 1, got {ratio}")
    if lr_max <= 0:
        raise ValueError(f"lr_max must be > 0, got {lr_max}")
    t = min(step, total_steps)
    cut = math.floor(total_steps * cut_frac)  # cut < total_steps because cut_frac < 1
    if t < cut:
        p = t / cut  # climbing
    else:
        p = 1 - (t - cut) / (total_steps - cut)  # decaying
    return lr_max * (1 + p * (ratio - 1)) / ratio


def linear_warmup_lr(step: float, total_steps: int, warmup_steps: int, lr_max: float = 1.0) -> float:
    """Linear warm-up from 0 to ``lr_max`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

    BERT (Devlin et al. 2019, Sec. A.2): warm-up over the first 10,000 steps, then linear decay;
    GPT-1 fine-tuning (Radford et al. 2018, Sec. 4.1): linear decay with warm-up over 0.2% of training.
    ``warmup_steps=0`` starts at the peak. Steps after ``total_steps`` stay at 0.
    """
    _check_step(step, total_steps)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    if lr_max <= 0:
        raise ValueError(f"lr_max must be > 0, got {lr_max}")
    t = min(step, total_steps)
    if t < warmup_steps:
        return lr_max * t / warmup_steps  # warming up
    return lr_max * (total_steps - t) / (total_steps - warmup_steps)  # decaying


def slanted_triangular_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0
) -> LambdaLR:
    """LambdaLR that follows the slanted triangle; each group's ``lr`` in the optimizer is its peak."""
    slanted_triangular_lr(0, total_steps, cut_frac=cut_frac, ratio=ratio)  # validate now, not at the first step
    return LambdaLR(optimizer, partial(slanted_triangular_lr, total_steps=total_steps, cut_frac=cut_frac, ratio=ratio))


def linear_warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> LambdaLR:
    """LambdaLR for linear warm-up + linear decay; each group's ``lr`` in the optimizer is its peak."""
    linear_warmup_lr(0, total_steps, warmup_steps)  # validate now, not at the first step
    return LambdaLR(optimizer, partial(linear_warmup_lr, total_steps=total_steps, warmup_steps=warmup_steps))
