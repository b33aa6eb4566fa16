"""Rotary position embeddings, RoPE (Su et al. 2021, RoFormer): positions enter attention as rotations.

Each pair of features of a query or key is rotated by an angle ``m * theta_i`` that grows with the token's position
``m`` (Eq. 34), with ``theta_i = base^(-2i/d)`` (Eq. 15; the paper uses base 10,000, SmolLM2 100,000). A rotation
keeps lengths, and the dot product of two rotated vectors depends only on the DIFFERENCE of their angles, so
``q_m . k_n`` sees the relative position ``m - n`` although each vector was rotated by its own absolute position.

Which features form a pair is a convention. The paper pairs neighbours ``(x_0, x_1), (x_2, x_3), ...``; Hugging Face's
Llama (and course_lib) pairs feature ``i`` with ``i + d/2`` ("rotate half"), which is the same rotation applied to
a permuted vector. llama.cpp's GGUF files keep the paper's layout, so their query/key weights are permuted back on
loading (``course_lib.convert.smollm2_gguf.unpermute_rotary_rows``).
"""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """The cos/sin tables of RoPE for any positions: ``theta_i = base^(-2i/d)``, angle ``m * theta_i`` (Eq. 15, 34)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings rotate pairs of features: head_dim must be even, got {head_dim}")
        self.head_dim = head_dim
        self.base = base

    def frequencies(self, device: torch.device | str | None = None) -> torch.Tensor:
        """theta_i = base^(-2i/d) for i = 0 .. d/2 - 1: ``[head_dim / 2]``, from fast-turning to slow-turning pairs."""
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim  # 2i/d
        return 1.0 / (self.base**exponents)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions [batch, tokens]`` (or ``[tokens]``) -> ``(cos, sin)``, each ``[batch, 1, tokens, head_dim]``.

        The extra dimension of size 1 broadcasts over the heads of ``[batch, heads, tokens, head_dim]``.
        Nothing is stored: the table is a function of the positions, cheap to compute for each forward pass.
        """
        if positions.dim() == 1:
            positions = positions[None, :]  # [1, tokens]
        theta = self.frequencies(positions.device)  # [head_dim / 2]
        angles = positions[..., None].float() * theta  # m * theta_i: [batch, tokens, head_dim / 2]
        angles = torch.cat([angles, angles], dim=-1)  # feature i and i + d/2 share an angle: [batch, tokens, head_dim]
        return angles.cos()[:, None], angles.sin()[:, None]  # [batch, 1, tokens, head_dim] each


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x_1, x_2) -> (-x_2, x_1)`` on the two halves of the last dimension: a 90-degree turn of every pair."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """R_m x = x * cos(m theta) + rotate_half(x) * sin(m theta)  (Su et al. 2021, Eq. 34, half-split pairs).

    ``x [batch, heads, tokens, head_dim]``; ``cos``/``sin`` from ``RotaryEmbedding``, ``[batch, 1, tokens, head_dim]``.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)  # [batch, heads, tokens, head_dim]
