"""Scaled dot-product attention and multi-head attention (Vaswani et al. 2017, Sec. 3.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.kv_cache import KeyValueCache
from course_lib.blocks.masks import additive_mask, causal_mask, combine_masks
from course_lib.blocks.rotary import apply_rotary


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V  (Vaswani et al. 2017, Eq. 1).

    ``query`` is ``[batch, heads, query, head_dim]``, ``key``/``value`` are ``[batch, heads, key, head_dim]``;
    ``mask`` is boolean, ``True`` where a query may look at a key, broadcastable to ``[batch, heads, query, key]``.
    Returns ``(output [batch, heads, query, head_dim], weights [batch, heads, query, key] or None)``.
    The weights are computed explicitly only when ``need_weights``; otherwise PyTorch's fused kernel does the same
    sum without ever storing the ``query x key`` matrix.
    """
    same_length = query.size(-2) == key.size(-2)
    if not need_weights and mask is None and (same_length or not is_causal):
        # The fastest path: the fused kernel builds the causal mask itself (or needs none).
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=is_causal), None
    if is_causal:
        mask = combine_masks(causal_mask(query.size(-2), key.size(-2), device=query.device), mask)
    if not need_weights:
        bias = additive_mask(mask, query.dtype)  # [.., query, key]: 0 where allowed, very negative where hidden
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout), None

    scores = torch.matmul(query, key.transpose(-2, -1)) * (1.0 / math.sqrt(query.size(-1)))  # [batch, heads, q, k]
    if mask is not None:
        scores = scores + additive_mask(mask, scores.dtype)
    weights = torch.softmax(scores, dim=-1)  # [batch, heads, query, key], each row sums to 1
    output = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), value)  # [batch, heads, q, head_dim]
    return output, weights


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V) (Eq. 4-5).

    Options of today's decoders (SmolLM2, LLaMA), all off by default:

    - ``n_kv_heads`` < ``n_heads``: grouped-query attention (Ainslie et al. 2023, Sec. 2.2): only ``n_kv_heads``
      key/value heads, each shared by a group of ``n_heads / n_kv_heads`` query heads (1: multi-query attention);
      a smaller key/value cache at almost the quality of full multi-head attention.
    - ``rotary=(cos, sin)`` in ``forward``: rotary positions applied to queries and keys (Su et al. 2021, Eq. 34).
    - ``cache`` in ``forward``: a ``KeyValueCache`` that keeps earlier tokens' keys and values for generation.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        bias: bool = True,
        n_kv_heads: int | None = None,
    ):
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if self.n_kv_heads < 1 or n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        self.head_dim = dim // n_heads
        self.attn_dropout = attn_dropout
        # All heads' W_i^Q side by side in one [dim, dim] matrix; the same for keys and values
        # ([dim, n_kv_heads * head_dim] with grouped-query attention).
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.value = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.output = nn.Linear(dim, dim, bias=bias)  # W^O
        self.output_dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor, n_heads: int | None = None) -> torch.Tensor:
        """``[batch, tokens, n_heads * head_dim]`` -> ``[batch, n_heads, tokens, head_dim]`` (default: all heads)."""
        batch, tokens, _ = x.shape
        n_heads = self.n_heads if n_heads is None else n_heads
        return x.view(batch, tokens, n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        output_attentions: bool = False,
        *,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KeyValueCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention over ``x [batch, tokens, dim]``; returns ``(output [batch, tokens, dim], weights | None)``.

        With a ``cache``, ``x`` holds only the new tokens, and ``mask`` covers the cached keys too.
        """
        batch, tokens, dim = x.shape
        query = self.split_heads(self.query(x))  # [batch, heads, tokens, head_dim]
        key = self.split_heads(self.key(x), self.n_kv_heads)  # [batch, kv_heads, tokens, head_dim]
        value = self.split_heads(self.value(x), self.n_kv_heads)  # [batch, kv_heads, tokens, head_dim]
        if rotary is not None:  # RoPE: rotate each query and key by its own position's angles
            query, key = apply_rotary(query, *rotary), apply_rotary(key, *rotary)
        if cache is not None:  # generation: earlier tokens' keys and values, then this step's
            key, value = cache.update(key, value)  # [batch, kv_heads, cached + tokens, head_dim]
        if self.n_kv_heads != self.n_heads:  # grouped-query: key/value head j serves query heads j*group..(j+1)*group-1
            group = self.n_heads // self.n_kv_heads
            key = key.repeat_interleave(group, dim=1)  # [batch, heads, keys, head_dim]
            value = value.repeat_interleave(group, dim=1)
        attended, weights = scaled_dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=is_causal,
            dropout=self.attn_dropout if self.training else 0.0,
            need_weights=output_attentions,
        )
        attended = attended.transpose(1, 2).reshape(batch, tokens, dim)  # concatenate the heads: [batch, tokens, dim]
        return self.output_dropout(self.output(attended)), weights
