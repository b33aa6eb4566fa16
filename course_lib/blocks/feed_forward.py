"""The position-wise feed-forward network (Vaswani et al. 2017, Sec. 3.3), with GELU as in GPT and BERT."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """FFN(x) = GELU(x W_1 + b_1) W_2 + b_2, applied to every position separately (Vaswani et al. 2017, Eq. 2).

    The 2017 Transformer used ReLU (``activation="relu"``, as Transformer-XL); GPT and BERT use GELU
    (Hendrycks & Gimpel 2016). GPT-1 and GPT-2 use its tanh approximation (``approximate_gelu=True``), BERT the
    exact erf form. ``hidden_dropout`` drops units after the activation (Transformer-XL's ``PositionwiseFF``);
    ``dropout`` acts on the output.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, approximate_gelu: bool = False,
                 activation: str = "gelu", hidden_dropout: float = 0.0):
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.expand = nn.Linear(dim, hidden_dim)  # W_1: dim -> hidden_dim (usually 4 * dim)
        if activation == "relu":
            self.activation = nn.ReLU()
        else:
            self.activation = nn.GELU(approximate="tanh" if approximate_gelu else "none")
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.project = nn.Linear(hidden_dim, dim)  # W_2: back to dim
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, dim]`` -> ``[batch, tokens, dim]``."""
        return self.dropout(self.project(self.hidden_dropout(self.activation(self.expand(x)))))


class SwiGLUFeedForward(nn.Module):
    """FFN_SwiGLU(x) = (Swish_1(x W) * x V) W_2, no biases (Shazeer 2020, Eq. 6), as in LLaMA and SmolLM2.

    A gated linear unit (Dauphin et al. 2017): one projection (``gate``, W) passed through Swish_1 = SiLU decides,
    feature by feature, how much of a second projection (``up``, V) goes through; ``down`` (W_2) maps back to ``dim``.
    Three matrices instead of two, so for the same parameter count the hidden width is usually about 8/3 * dim.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden_dim, bias=False)  # W: the gate, through Swish
        self.up = nn.Linear(dim, hidden_dim, bias=False)  # V: the values that the gate lets through
        self.down = nn.Linear(hidden_dim, dim, bias=False)  # W_2: back to dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, dim]`` -> ``[batch, tokens, dim]``."""
        gated = torch.nn.functional.silu(self.gate(x)) * self.up(x)  # [batch, tokens, hidden_dim]
        return self.down(gated)
