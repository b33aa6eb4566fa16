"""Scaled dot-product attention and multi-head attention (Vaswani et al. 2017, Sec. 3.2).

``MultiHeadAttention`` can also read a ``memory``: earlier hidden states that serve as extra keys and values but
ask no queries (Transformer-XL's cached segment). Its score step is one method, :meth:`MultiHeadAttention.attend`,
so a variant such as relative attention overrides only the scores.
"""

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
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + B) V  (Vaswani et al. 2017, Eq. 1; B = 0 there).

    ``query`` is ``[batch, heads, query, head_dim]``, ``key``/``value`` are ``[batch, heads, key, head_dim]``;
    ``mask`` is boolean, ``True`` where a query may look at a key, broadcastable to ``[batch, heads, query, key]``;
    ``bias`` is an optional float term B added to the scaled scores (Transformer-XL's position terms), also
    broadcastable to ``[batch, heads, query, key]``. With more keys than queries, the queries are the LAST ones.
    Returns ``(output [batch, heads, query, head_dim], weights [batch, heads, query, key] or None)``.
    The weights are computed explicitly only when ``need_weights``; otherwise PyTorch's fused kernel does the same
    sum without ever storing the ``query x key`` matrix.
    """
    same_length = query.size(-2) == key.size(-2)
    if not need_weights and mask is None and bias is None and (same_length or not is_causal):
        # The fastest path: the fused kernel builds the causal mask itself (or needs none).
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=is_causal), None
    if is_causal:
        mask = combine_masks(causal_mask(query.size(-2), key.size(-2), device=query.device), mask)
    if mask is not None:  # 0 where allowed, very negative where hidden: [.., query, key]
        bias = additive_mask(mask, query.dtype) if bias is None else bias + additive_mask(mask, bias.dtype)
    if not need_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout), None

    scores = torch.matmul(query, key.transpose(-2, -1)) * (1.0 / math.sqrt(query.size(-1)))  # [batch, heads, q, k]
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores, dim=-1)  # [batch, heads, query, key], each row sums to 1
    output = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), value)  # [batch, heads, q, head_dim]
    return output, weights


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V) (Eq. 4-5).

    ``head_dim`` defaults to ``dim // n_heads``; Transformer-XL sets it on its own (``n_heads * head_dim`` may
    differ from ``dim``). ``bias=False`` drops the projections' biases (Transformer-XL, LLaMA and SmolLM2 have none).
    Options of today's decoders (SmolLM2, LLaMA), all off by default:

    - ``n_kv_heads`` < ``n_heads``: grouped-query attention (Ainslie et al. 2023, Sec. 2.2): only ``n_kv_heads``
      key/value heads, each shared by a group of ``n_heads / n_kv_heads`` query heads (1: multi-query attention);
      a smaller key/value cache at almost the quality of full multi-head attention.
    - ``rotary=(cos, sin)`` in ``forward``: rotary positions applied to queries and keys (Su et al. 2021, Eq. 34).
    - ``cache`` in ``forward``: a ``KeyValueCache`` that keeps earlier tokens' keys and values for generation.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, attn_dropout: float = 0.0, bias: bool = True,
                 head_dim: int | None = None, n_kv_heads: int | None = None):
        super().__init__()
        if head_dim is None and dim % n_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if self.n_kv_heads < 1 or n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        self.head_dim = dim // n_heads if head_dim is None else head_dim
        self.attn_dropout = attn_dropout
        # All heads' W_i^Q side by side in one [dim, heads * head_dim] matrix; the same for keys and values
        # ([dim, n_kv_heads * head_dim] with grouped-query attention).
        self.query = nn.Linear(dim, n_heads * self.head_dim, bias=bias)
        self.key = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.value = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.output = nn.Linear(n_heads * self.head_dim, dim, bias=bias)  # W^O
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
        memory: torch.Tensor | None = None,
        *,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KeyValueCache | None = None,
        **score_inputs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention over ``x [batch, tokens, dim]``; returns ``(output [batch, tokens, dim], weights | None)``.

        With ``memory [batch, memory, dim]`` the keys and values come from ``[memory; x]`` and the queries from ``x``
        alone. With a ``cache``, ``x`` holds only the new tokens, and ``mask`` covers the cached keys too.
        ``score_inputs`` go to :meth:`attend` (a subclass's extra inputs, e.g. relative positions).
        """
        batch, tokens, _ = x.shape
        context = x if memory is None else torch.cat([memory, x], dim=1)  # [batch, keys, dim]
        query = self.split_heads(self.query(x))  # [batch, heads, tokens, head_dim]
        key = self.split_heads(self.key(context), self.n_kv_heads)  # [batch, kv_heads, keys, head_dim]
        value = self.split_heads(self.value(context), self.n_kv_heads)  # [batch, kv_heads, keys, head_dim]
        if rotary is not None:  # RoPE: rotate each query and key by its own position's angles
            query, key = apply_rotary(query, *rotary), apply_rotary(key, *rotary)
        if cache is not None:  # generation: earlier tokens' keys and values, then this step's
            key, value = cache.update(key, value)  # [batch, kv_heads, cached + tokens, head_dim]
        if self.n_kv_heads != self.n_heads:  # grouped-query: key/value head j serves query heads j*group..(j+1)*group-1
            group = self.n_heads // self.n_kv_heads
            key = key.repeat_interleave(group, dim=1)  # [batch, heads, keys, head_dim]
            value = value.repeat_interleave(group, dim=1)
        attended, weights = self.attend(query, key, value, mask, is_causal, output_attentions, **score_inputs)
        attended = attended.transpose(1, 2).reshape(batch, tokens, -1)  # concatenate the heads: [b, tokens, h * d]
        return self.output_dropout(self.output(attended)), weights

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
               is_causal: bool, output_attentions: bool, bias: torch.Tensor | None = None):
        """The score step, softmax(Q K^T / sqrt(d_k) + bias) V per head; a subclass changes the scores here."""
        return scaled_dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=is_causal,
            dropout=self.attn_dropout if self.training else 0.0,
            need_weights=output_attentions,
            bias=bias,
        )
