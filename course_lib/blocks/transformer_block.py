"""One transformer layer: self-attention and feed-forward, each wrapped in a residual connection and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from course_lib.blocks.attention import MultiHeadAttention
from course_lib.blocks.feed_forward import FeedForward


class TransformerBlock(nn.Module):
    """A transformer layer in one of its two LayerNorm placements.

    - post-LN (``pre_norm=False``; the 2017 Transformer, GPT-1, BERT): ``x = LayerNorm(x + Sublayer(x))``
      (Vaswani et al. 2017, Sec. 3.1).
    - pre-LN (``pre_norm=True``; GPT-2): ``x = x + Sublayer(LayerNorm(x))``; "layer normalization was moved to the
      input of each sub-block" (Radford et al. 2019, Sec. 2.3), which keeps a clean residual path through the stack.

    ``attention`` and ``feed_forward`` replace the default ``MultiHeadAttention`` and ``FeedForward`` (Transformer-XL
    passes its relative attention and a ReLU network). A ``memory`` (extra keys and values, Transformer-XL) is
    normalised by ``ln_1`` like ``x`` in pre-LN, as the authors normalise ``[memory; segment]``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        hidden_dim: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        approximate_gelu: bool = False,
        pre_norm: bool = False,
        attention: nn.Module | None = None,
        feed_forward: nn.Module | None = None,
    ):
        super().__init__()
        self.pre_norm = pre_norm
        self.ln_1 = nn.LayerNorm(dim, eps=layer_norm_eps)  # before attention (pre-LN) or after its residual (post-LN)
        if attention is None:
            attention = MultiHeadAttention(dim, n_heads, dropout=dropout, attn_dropout=attn_dropout)
        if feed_forward is None:
            feed_forward = FeedForward(dim, hidden_dim, dropout=dropout, approximate_gelu=approximate_gelu)
        self.attn = attention
        self.ln_2 = nn.LayerNorm(dim, eps=layer_norm_eps)  # the same around the feed-forward network
        self.feed_forward = feed_forward

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        output_attentions: bool = False,
        memory: torch.Tensor | None = None,
        **score_inputs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [batch, tokens, dim]`` -> ``(x [batch, tokens, dim], attention weights or None)``.

        ``memory [batch, memory, dim]`` and ``score_inputs`` are handed to the attention.
        """
        if self.pre_norm:  # GPT-2
            memory = None if memory is None else self.ln_1(memory)
            attended, weights = self.attn(self.ln_1(x), mask, is_causal, output_attentions, memory, **score_inputs)
            x = x + attended
            x = x + self.feed_forward(self.ln_2(x))
        else:  # GPT-1, BERT
            attended, weights = self.attn(x, mask, is_causal, output_attentions, memory, **score_inputs)
            x = self.ln_1(x + attended)
            x = self.ln_2(x + self.feed_forward(x))
        return x, weights
