"""Model sizes without allocating the model: build it on PyTorch's 'meta' device (shapes only, no memory)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def count_parameters(model_class: Callable[..., nn.Module], *args, **kwargs) -> int:
    """Number of distinct trainable scalars of ``model_class(*args, **kwargs)``; tied weights count once.

    Example: ``count_parameters(GPT, GPTConfig.gpt2_1558m())`` is instant and uses no memory for the weights.
    """
    with torch.device("meta"):
        model = model_class(*args, **kwargs)
    return sum(parameter.numel() for parameter in model.parameters())
