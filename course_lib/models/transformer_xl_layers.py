"""Transformer-XL's decoder layers (Dai et al. 2019; authors' ``mem_transformer.py``).

A layer is attention over ``[memory; segment]`` followed by the position-wise feed-forward net, each with its own
residual connection and LayerNorm. The relative layer is the paper's; the absolute layer is the authors'
``MultiHeadAttn``/``DecoderLayer``, kept for the "0 1 2 3 0 1 2 3" demonstration and as the vanilla baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.relative_attention import RelativeMultiHeadAttention


class PositionwiseFeedForward(nn.Module):
    """Linear-ReLU-Dropout-Linear-Dropout with residual + LayerNorm (authors' PositionwiseFF)."""

    def __init__(self, d_model: int, d_inner: int, dropout: float = 0.0, pre_lnorm: bool = False) -> None:
        super().__init__()
        self.core = nn.Sequential(
            nn.Linear(d_model, d_inner), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(d_inner, d_model), nn.Dropout(dropout),
        )
        self.layer_norm = nn.LayerNorm(d_model)
        self.pre_lnorm = pre_lnorm

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, d_model]`` -> same shape."""
        if self.pre_lnorm:
            return hidden + self.core(self.layer_norm(hidden))
        return self.layer_norm(hidden + self.core(hidden))


class AbsoluteMultiHeadAttention(nn.Module):
    """Plain multi-head attention over ``[memory; segment]`` (authors' MultiHeadAttn): no position terms inside."""

    def __init__(self, n_head: int, d_model: int, d_head: int, dropout: float = 0.0, dropatt: float = 0.0,
                 pre_lnorm: bool = False) -> None:
        super().__init__()
        self.n_head, self.d_head = n_head, d_head
        self.q_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.kv_net = nn.Linear(d_model, 2 * n_head * d_head, bias=False)
        self.o_net = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)
        self.dropatt = dropatt
        self.layer_norm = nn.LayerNorm(d_model)
        self.scale = 1.0 / math.sqrt(d_head)
        self.pre_lnorm = pre_lnorm

    def forward(self, hidden: torch.Tensor, allowed: torch.Tensor | None, memory: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``allowed``: ``[qlen, klen]`` bool, or None for the plain causal mask without memory."""
        batch, query_len, _ = hidden.shape
        context = hidden if memory is None else torch.cat([memory, hidden], dim=1)  # [batch, klen, d_model]
        if self.pre_lnorm:
            context = self.layer_norm(context)
        key_len = context.size(1)
        query = self.q_net(context[:, -query_len:]).view(batch, query_len, self.n_head, self.d_head).transpose(1, 2)
        key, value = self.kv_net(context).chunk(2, dim=-1)
        key = key.view(batch, key_len, self.n_head, self.d_head).transpose(1, 2)  # [batch, heads, klen, d_head]
        value = value.view(batch, key_len, self.n_head, self.d_head).transpose(1, 2)
        dropout_p = self.dropatt if self.training else 0.0
        if output_attentions:
            if allowed is None:
                allowed = torch.ones(query_len, key_len, dtype=torch.bool, device=hidden.device).tril()
            scores = (query @ key.transpose(-1, -2)) * self.scale  # [batch, heads, qlen, klen]
            probabilities = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
            attended = F.dropout(probabilities, dropout_p, self.training) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, dropout_p=dropout_p,
                                                      is_causal=allowed is None, scale=self.scale)
            probabilities = None
        attended = attended.transpose(1, 2).reshape(batch, query_len, self.n_head * self.d_head)
        output = self.drop(self.o_net(attended))
        output = hidden + output if self.pre_lnorm else self.layer_norm(hidden + output)
        return output, probabilities


class RelativeDecoderLayer(nn.Module):
    """Relative attention over memory + feed-forward (authors' RelPartialLearnableDecoderLayer)."""

    def __init__(self, n_head: int, d_model: int, d_head: int, d_inner: int, dropout: float = 0.0,
                 dropatt: float = 0.0, pre_lnorm: bool = False) -> None:
        super().__init__()
        self.attention = RelativeMultiHeadAttention(n_head, d_model, d_head, dropout, dropatt, pre_lnorm)
        self.feed_forward = PositionwiseFeedForward(d_model, d_inner, dropout, pre_lnorm)

    def forward(self, hidden, position_keys, u, v, allowed, memory=None, memory_keys_values=None,
                output_attentions=False):
        """``[batch, qlen, d_model]`` -> same shape, attention probabilities (if asked), keys and values."""
        hidden, probabilities, keys_values = self.attention(hidden, position_keys, u, v, allowed, memory,
                                                            memory_keys_values, output_attentions)
        return self.feed_forward(hidden), probabilities, keys_values


class AbsoluteDecoderLayer(nn.Module):
    """Plain attention over memory + feed-forward (authors' DecoderLayer)."""

    def __init__(self, n_head: int, d_model: int, d_head: int, d_inner: int, dropout: float = 0.0,
                 dropatt: float = 0.0, pre_lnorm: bool = False) -> None:
        super().__init__()
        self.attention = AbsoluteMultiHeadAttention(n_head, d_model, d_head, dropout, dropatt, pre_lnorm)
        self.feed_forward = PositionwiseFeedForward(d_model, d_inner, dropout, pre_lnorm)

    def forward(self, hidden, allowed, memory=None, output_attentions=False):
        """``[batch, qlen, d_model]`` -> same shape, plus attention probabilities if asked."""
        hidden, probabilities = self.attention(hidden, allowed, memory, output_attentions)
        return self.feed_forward(hidden), probabilities
