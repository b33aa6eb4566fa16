"""Transformer-XL's relative positional attention (Dai et al. 2019, Sec. 3.3; authors' ``mem_transformer.py``).

The score of query i on key j splits into four terms (Eq. in Sec. 3.3):

    A_ij = q_i . k_j            (a) content         + q_i . W_kR R_{i-j}   (b) content-dependent position
         + u . k_j              (c) global content  + v . W_kR R_{i-j}     (d) global position

so (a)+(c) = (q_i + u) . k_j and (b)+(d) = (q_i + v) . r_{i-j} with r = W_kR R (the paper's names; the authors'
code names are listed in ``course_lib.models.transformer_xl``). R is a *relative* sinusoid, so a token's key never
carries "I am token 5", only "I am 3 tokens back".
(b)+(d) is computed for every query against the distances klen-1 .. 0 and then moved into place by the relative shift.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.blocks.attention import MultiHeadAttention


class RelativePositionEmbedding(nn.Module):
    """R_d = [sin(d * f); cos(d * f)] for distances d, sines and cosines concatenated (authors' PositionalEmbedding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the sinusoid needs an even dim (half sines, half cosines), got {dim}")
        inverse_frequency = 1.0 / (10000 ** (torch.arange(0.0, dim, 2.0) / dim))  # [dim / 2]
        self.register_buffer("inverse_frequency", inverse_frequency, persistent=False)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """``[positions]`` float distances -> ``[positions, dim]``."""
        angles = torch.outer(distances, self.inverse_frequency)  # [positions, dim / 2]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # [positions, dim]


def relative_distances(key_len: int, max_distance: int = -1, device=None, dtype=torch.float32) -> torch.Tensor:
    """The distances klen-1, ..., 1, 0 that column c of the unshifted score matrix stands for (clamped if > 0)."""
    distances = torch.arange(key_len - 1, -1, -1.0, device=device, dtype=dtype)  # [klen]
    if max_distance > 0:
        distances = distances.clamp(max=max_distance)  # farther tokens all count as max_distance away
    return distances


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """Turn ``[..., query, distance-column]`` scores into ``[..., query, key]`` scores (authors' ``_rel_shift``).

    Column c of the input holds distance klen-1-c. Query i (with klen-qlen memory slots before it) needs distance
    (klen-qlen) + i - j at key j, which is input column j + (qlen-1-i): row i must move left by qlen-1-i.
    In memory, element (i, c) sits at i * klen + c, so the wanted element (i, j + qlen-1-i) sits at
    (qlen-1) + i * (klen-1) + j: the same buffer read from offset qlen-1 with a row stride of klen-1, a view
    without any copy. (The authors get there by padding a zero column and re-cutting the rows.) Entries right of
    key klen-qlen+i come out as junk from the next row; the causal mask hides them.
    """
    *batch, query_len, key_len = scores.shape
    if key_len < query_len:
        raise ValueError(f"relative_shift needs klen >= qlen, got qlen={query_len}, klen={key_len}")
    if scores.stride()[-2:] != (key_len, 1):  # each [query, key] block must be one contiguous buffer
        scores = scores.contiguous()
    batch_strides = scores.stride()[:-2]
    return scores.as_strided((*batch, query_len, key_len), (*batch_strides, key_len - 1, 1),
                             scores.storage_offset() + query_len - 1)


class RelativeMultiHeadAttention(MultiHeadAttention):
    """Multi-head attention with relative positions (authors' ``RelPartialLearnableMultiHeadAttn``).

    Everything but the scores is ``MultiHeadAttention``'s (queries from the segment, keys and values from
    ``[memory; segment]``); here (a)+(c) is the fused kernel's Q K^T with Q = q + u, and (b)+(d) its additive bias.
    The residual connection and LayerNorm belong to the ``TransformerBlock`` around it, as for every other block.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, attn_dropout: float = 0.0, bias: bool = False,
                 head_dim: int | None = None) -> None:
        super().__init__(dim, n_heads, dropout=dropout, attn_dropout=attn_dropout, bias=bias, head_dim=head_dim)
        self.position = nn.Linear(dim, n_heads * self.head_dim, bias=bias)  # W_kR: projects the sinusoids R

    def position_keys(self, positions: torch.Tensor) -> torch.Tensor:
        """r = W_kR R: ``[klen, dim]`` sinusoids -> ``[heads, klen, head_dim]`` position keys."""
        return self.split_heads(self.position(positions)[None])[0]  # [heads, klen, head_dim]

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
               is_causal: bool, output_attentions: bool, *, positions: torch.Tensor, u: torch.Tensor,
               v: torch.Tensor):
        """softmax(((a) + (b) + (c) + (d)) / sqrt(head_dim)) V.

        ``positions``: R, ``[klen, dim]`` sinusoids of the distances klen-1 .. 0 (:func:`relative_distances`);
        ``u``, ``v``: ``[heads, head_dim]``, the global content and position biases.
        """
        scale = 1.0 / math.sqrt(self.head_dim)
        # (b) + (d), already scaled: (q_i + v) . r_c / sqrt(head_dim) for every distance column c, then shifted
        position_keys = self.position_keys(positions)  # [heads, klen, head_dim]
        position_scores = relative_shift((query + v[:, None]) * scale @ position_keys.transpose(-1, -2))
        # (a) + (c) = (q_i + u) . k_j: the ordinary scores of the shifted queries q + u  [batch, heads, qlen, klen]
        return super().attend(query + u[:, None], key, value, mask, is_causal, output_attentions,
                              bias=position_scores)
