"""Transformer-XL's relative positional attention (Dai et al. 2019, Sec. 3.3; authors' ``mem_transformer.py``).

The score of query i on key j splits into four terms (Eq. in Sec. 3.3):

    A_ij = q_i . k_j            (a) content         + q_i . W_kR R_{i-j}   (b) content-dependent position
         + u . k_j              (c) global content  + v . W_kR R_{i-j}     (d) global position

so (a)+(c) = (q_i + u) . k_j and (b)+(d) = (q_i + v) . r_{i-j}. ``u`` and ``v`` are the authors' ``r_w_bias`` and
``r_r_bias``; R is a *relative* sinusoid, so a token's key never carries "I am token 5", only "I am 3 tokens back".
(b)+(d) is computed for every query against the distances klen-1 .. 0 and then moved into place by the relative shift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


def relative_distances(key_len: int, clamp_len: int = -1, device=None, dtype=torch.float32) -> torch.Tensor:
    """The distances klen-1, ..., 1, 0 that column c of the unshifted score matrix stands for (clamped if > 0)."""
    distances = torch.arange(key_len - 1, -1, -1.0, device=device, dtype=dtype)  # [klen]
    if clamp_len > 0:
        distances = distances.clamp(max=clamp_len)  # farther tokens all count as clamp_len away
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


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head attention with memory and relative positions (authors' RelPartialLearnableMultiHeadAttn).

    Residual connection and LayerNorm included (post-LN, or pre-LN with ``pre_lnorm``), as in the authors' code.
    """

    def __init__(self, n_head: int, d_model: int, d_head: int, dropout: float = 0.0, dropatt: float = 0.0,
                 pre_lnorm: bool = False) -> None:
        super().__init__()
        self.n_head, self.d_head = n_head, d_head
        self.qkv_net = nn.Linear(d_model, 3 * n_head * d_head, bias=False)  # W_q, W_kE, W_v
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)  # W_kR: projects the sinusoids R
        self.o_net = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)
        self.dropatt = dropatt
        self.layer_norm = nn.LayerNorm(d_model)
        self.scale = 1.0 / math.sqrt(d_head)
        self.pre_lnorm = pre_lnorm

    def position_keys(self, position_embedding: torch.Tensor) -> torch.Tensor:
        """r = W_kR R: ``[klen, d_model]`` sinusoids -> ``[heads, klen, d_head]`` position keys."""
        r = self.r_net(position_embedding)  # [klen, heads * d_head]
        return r.view(-1, self.n_head, self.d_head).transpose(0, 1)  # [heads, klen, d_head]

    def _heads(self, projected: torch.Tensor) -> torch.Tensor:
        """``[batch, n, heads * d_head]`` -> ``[batch, heads, n, d_head]``."""
        return projected.view(projected.size(0), projected.size(1), self.n_head, self.d_head).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, position_keys: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                allowed: torch.Tensor, memory: torch.Tensor | None = None,
                memory_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
                output_attentions: bool = False):
        """Attend from ``hidden`` ``[batch, qlen, d_model]`` to ``[memory; hidden]``.

        ``position_keys``: ``[heads, klen, d_head]`` from :meth:`position_keys`; ``u``, ``v``: ``[heads, d_head]``;
        ``allowed``: ``[qlen, klen]`` bool, True where query i may attend key j; ``memory_keys_values``: the
        memory's keys and values ``[batch, heads, mlen, d_head]`` if they are known already (evaluation).
        Returns the layer output ``[batch, qlen, d_model]``, the attention probabilities
        ``[batch, heads, qlen, klen]`` if asked (else None) and this call's keys and values of all klen positions.
        """
        batch, query_len, _ = hidden.shape
        w_q, w_kv = self.qkv_net.weight.split([self.n_head * self.d_head, 2 * self.n_head * self.d_head])
        if memory_keys_values is None:
            context = hidden if memory is None else torch.cat([memory, hidden], dim=1)  # [batch, klen, d_model]
            if self.pre_lnorm:
                context = self.layer_norm(context)
            segment = context[:, -query_len:]
            key, value = (self._heads(x) for x in F.linear(context, w_kv).chunk(2, dim=-1))  # [b, h, klen, d_head]
        else:  # the memory was projected when it was the segment: project only the new tokens
            segment = self.layer_norm(hidden) if self.pre_lnorm else hidden
            new_key, new_value = (self._heads(x) for x in F.linear(segment, w_kv).chunk(2, dim=-1))
            key = torch.cat([memory_keys_values[0], new_key], dim=2)  # [batch, heads, klen, d_head]
            value = torch.cat([memory_keys_values[1], new_value], dim=2)
        # Queries only for the current segment (the authors also project the memory and throw those away).
        query = self._heads(F.linear(segment, w_q))  # [batch, heads, qlen, d_head]

        # (b) + (d), already scaled: (q_i + v) . r_c / sqrt(d_head) for every distance column c, then shifted
        position_scores = relative_shift(torch.einsum("bhqd,hkd->bhqk", (query + v[:, None]) * self.scale,
                                                      position_keys))  # [batch, heads, qlen, klen]
        mask_bias = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device).masked_fill_(
            ~allowed, float("-inf"))  # [qlen, klen]: 0 where allowed, -inf elsewhere
        position_bias = position_scores + mask_bias  # [batch, heads, qlen, klen]
        dropout_p = self.dropatt if self.training else 0.0
        if output_attentions:
            content_scores = (query + u[:, None]) @ key.transpose(-1, -2)  # (a) + (c): [batch, heads, qlen, klen]
            probabilities = F.softmax(content_scores * self.scale + position_bias, dim=-1)
            attended = F.dropout(probabilities, dropout_p, self.training) @ value  # [batch, heads, qlen, d_head]
        else:
            # Same softmax((a)+(b)+(c)+(d)) via the fused kernel: (a)+(c) is its q.k, (b)+(d) its additive mask.
            attended = F.scaled_dot_product_attention(query + u[:, None], key, value, attn_mask=position_bias,
                                                      dropout_p=dropout_p, scale=self.scale)
            probabilities = None
        attended = attended.transpose(1, 2).reshape(batch, query_len, self.n_head * self.d_head)
        output = self.drop(self.o_net(attended))  # [batch, qlen, d_model]
        output = hidden + output if self.pre_lnorm else self.layer_norm(hidden + output)
        return output, probabilities, (key, value)
