"""The course's one language-model loss: next-token cross-entropy (Radford et al. 2018, Eq. 1; Bengio et al. 2003).

    L1(U) = -sum_i log P(u_i | u_{i-k}, ..., u_{i-1})

One convention everywhere: ``targets[:, i]`` is the token that FOLLOWS input position i, so ``logits[:, i]`` is scored
against ``targets[:, i]`` with no further shift, and positions whose target is -100 are skipped. Models that take
Hugging Face style ``labels`` (equal to the inputs) shift them first with :func:`shift_labels`; ELMo's backward LM,
whose "next" token is the previous one, passes its targets the other way round.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # a target the loss skips (padding, or a token with nothing to predict it)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits [batch, tokens, vocab]`` against ``targets [batch, tokens]``, already aligned.

    ``reduction`` is ``"mean"`` (over the targets that are not -100), ``"sum"`` or ``"none"`` (``[batch * tokens]``).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must agree on "
                         "[batch, tokens]: targets[:, i] is the token that follows input i")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def shift_labels(labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``labels [batch, tokens]`` (the inputs themselves) -> targets ``[batch, tokens - 1]`` for ``logits[:, :-1]``.

    Position i predicts label i + 1; a padding position (``attention_mask == 0``) becomes -100.
    """
    targets = labels[:, 1:]  # [batch, tokens - 1]
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, 1:] == 0, IGNORE_INDEX)
    return targets


@torch.no_grad()
def window_loss(model: nn.Module, ids: torch.Tensor, length: int, batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats) over consecutive windows of ``length`` predicted tokens of 1-D ``ids``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = (len(ids) - 1) // length
    if rows < 1:
        raise ValueError(f"{len(ids)} tokens are fewer than one window of {length} + 1")
    inputs = ids[: rows * length].view(rows, length)  # [rows, length]
    targets = ids[1: rows * length + 1].view(rows, length)  # the next token of every input position
    total = 0.0
    for first in range(0, rows, batch):
        logits = model(inputs[first:first + batch].to(device)).logits  # [batch, length, vocab]
        total += next_token_loss(logits, targets[first:first + batch].to(device), reduction="sum").item()
    model.train(was_training)
    return total / (rows * length)
