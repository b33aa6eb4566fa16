"""Input embeddings: tokens, positions (learned or sinusoidal) and BERT's segments."""

from __future__ import annotations

import math

import torch
from torch import nn


def check_token_ids(input_ids: torch.Tensor, vocab_size: int, name: str = "input_ids") -> None:
    """Raise ValueError unless ``input_ids`` is an integer ``[batch, tokens]`` tensor of ids in ``[0, vocab_size)``."""
    if not isinstance(input_ids, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must hold integer token ids (torch.long), got dtype {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise ValueError(f"{name} must be [batch, tokens] (rank 2), got shape {tuple(input_ids.shape)}")
    if input_ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(input_ids.shape)})")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds id {bad}, outside the vocabulary [0, {vocab_size})")


class TokenEmbedding(nn.Embedding):
    """A lookup table: token id -> a learned ``dim``-vector (Vaswani et al. 2017, Sec. 3.4)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens]`` integer ids -> ``[batch, tokens, dim]``; ids outside the vocabulary raise ValueError."""
        check_token_ids(input_ids, self.num_embeddings)
        return super().forward(input_ids)


class LearnedPositionEmbedding(nn.Embedding):
    """One learned vector per position 0..max_positions-1, as in GPT and BERT (Radford et al. 2018, Sec. 4.1)."""

    def forward(self, n_tokens: int, offset: int = 0) -> torch.Tensor:
        """Vectors of positions ``offset .. offset + n_tokens - 1`` as ``[1, tokens, dim]``."""
        if offset + n_tokens > self.num_embeddings:
            raise ValueError(
                f"sequence of {offset + n_tokens} tokens is longer than the context of {self.num_embeddings} positions"
            )
        positions = torch.arange(offset, offset + n_tokens, device=self.weight.device)
        return super().forward(positions)[None]  # [1, tokens, dim]


def sinusoidal_table(max_positions: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)  (Vaswani et al. 2017, Sec. 3.5)."""
    positions = torch.arange(max_positions, dtype=torch.float32)[:, None]  # [positions, 1]
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # [dim/2]
    table = torch.zeros(max_positions, dim)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    return table  # [positions, dim]


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed (not learned) sine/cosine position vectors of the original Transformer (Vaswani et al. 2017, Sec. 3.5)."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions = max_positions
        self.register_buffer("table", sinusoidal_table(max_positions, dim), persistent=False)

    def forward(self, n_tokens: int, offset: int = 0) -> torch.Tensor:
        """Vectors of positions ``offset .. offset + n_tokens - 1`` as ``[1, tokens, dim]``."""
        if offset + n_tokens > self.max_positions:
            raise ValueError(
                f"sequence of {offset + n_tokens} tokens is longer than the {self.max_positions} positions in the table"
            )
        return self.table[offset : offset + n_tokens][None]  # [1, tokens, dim]


class SegmentEmbedding(nn.Embedding):
    """BERT's sentence A / sentence B embedding, added to every token (Devlin et al. 2019, Sec. 3, Figure 2)."""

    def forward(self, segment_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens]`` segment ids (0 = sentence A, 1 = sentence B) -> ``[batch, tokens, dim]``."""
        check_token_ids(segment_ids, self.num_embeddings, name="token_type_ids")
        return super().forward(segment_ids)
