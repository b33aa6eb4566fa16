"""RMSNorm (Zhang & Sennrich 2019): LayerNorm without the mean, used by LLaMA-style decoders such as SmolLM2."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """a_bar_i = a_i / RMS(a) * g_i,  RMS(a) = sqrt(1/n sum_i a_i^2)  (Zhang & Sennrich 2019, Eq. 4).

    Unlike LayerNorm there is no re-centring (no mean subtracted) and no bias: only the scale is normalised, which
    the paper finds is what matters, at a lower cost. ``eps`` inside the square root keeps an all-zero vector finite.
    The sum is taken in float32 even for half-precision inputs, as in Hugging Face's Llama.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))  # the gain g, one per feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, dim]`` -> ``[batch, tokens, dim]``, each vector rescaled to root-mean-square 1, times g."""
        x32 = x.float()
        mean_square = x32.pow(2).mean(dim=-1, keepdim=True)  # [batch, tokens, 1]
        return self.weight * (x32 * torch.rsqrt(mean_square + self.eps)).to(x.dtype)
