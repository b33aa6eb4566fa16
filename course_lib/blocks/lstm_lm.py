"""The LSTM parts of ELMo's bidirectional language model (Peters et al. 2018, Sec. 3.1 and 3.4).

A forward LM reads t_1 .. t_k and predicts t_{k+1}; a backward LM reads t_N .. t_k and predicts t_{k-1}.
Each is a stack of LSTMs with a projection (the paper: 4096 cells projected to 512 dimensions, "LSTMP") and a
residual connection from the first layer to the second. The backward LM is the same stack run on every sentence
reversed *within its own length*, so padding never sits between a token and its right-hand context.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``[batch]`` lengths -> ``[batch, tokens]`` bool mask, True on real tokens."""
    positions = torch.arange(num_tokens, device=lengths.device)  # [tokens]
    return positions[None, :] < lengths[:, None]  # [batch, tokens]


def resolve_lengths(input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a padded ``[batch, tokens]`` batch and return its ``(lengths, mask)``; ValueError says what is wrong."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}")
    batch, num_tokens = input_ids.shape
    if batch == 0 or num_tokens == 0:
        raise ValueError(f"empty batch: input_ids has shape {tuple(input_ids.shape)}")
    if mask is not None:
        if tuple(mask.shape) != (batch, num_tokens):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match input_ids shape {(batch, num_tokens)}")
        mask = mask.bool()
        mask_lengths = mask.sum(dim=1)
        if not torch.equal(mask, lengths_to_mask(mask_lengths, num_tokens)):
            bad = (mask != lengths_to_mask(mask_lengths, num_tokens)).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"mask must be True on a prefix of each row (right padding); rows {bad} are not")
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=input_ids.device)
            if tuple(lengths.shape) != (batch,) or not torch.equal(lengths.to(mask_lengths.dtype), mask_lengths):
                raise ValueError(f"lengths {lengths.tolist()} disagree with the mask's lengths {mask_lengths.tolist()}")
        lengths = mask_lengths
    elif lengths is not None:
        lengths = torch.as_tensor(lengths, device=input_ids.device)
        if tuple(lengths.shape) != (batch,):
            raise ValueError(f"lengths has shape {tuple(lengths.shape)} but the batch has {batch} sentences")
        if (lengths > num_tokens).any():
            raise ValueError(f"lengths {lengths.tolist()} exceed the {num_tokens} tokens of input_ids")
    else:
        lengths = torch.full((batch,), num_tokens, device=input_ids.device)
    empty = (lengths <= 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"sentences {empty} are empty (length 0); every sentence needs at least one token")
    lengths = lengths.long()
    return lengths, lengths_to_mask(lengths, num_tokens)


def reverse_padded(sequence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` steps and leave its padding in place (an involution)."""
    num_tokens = sequence.size(1)
    positions = torch.arange(num_tokens, device=sequence.device)[None, :]  # [1, tokens]
    reversed_positions = lengths[:, None] - 1 - positions  # [batch, tokens]
    index = torch.where(positions < lengths[:, None], reversed_positions, positions)  # padding maps to itself
    if sequence.dim() == 3:
        index = index[:, :, None].expand(-1, -1, sequence.size(2))  # [batch, tokens, dim]
    return sequence.gather(1, index)


class ProjectedLSTMStack(nn.Module):
    """One direction of the biLM: ``num_layers`` LSTMs with projection, residual from layer 2 on (ELMo Sec. 3.4)."""

    def __init__(self, dim: int, hidden_size: int, num_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden_size <= dim:
            raise ValueError(f"hidden_size ({hidden_size}) must exceed the projection dim ({dim}) for an LSTMP")
        # proj_size turns torch's LSTM into an LSTMP: h_t = W_proj (o_t * tanh(c_t)), so each layer outputs `dim`
        self.layers = nn.ModuleList(
            nn.LSTM(dim, hidden_size, proj_size=dim, batch_first=True) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Run left to right over ``[batch, tokens, dim]``; return every layer's ``[batch, tokens, dim]`` output."""
        outputs = []
        x = tokens
        for index, lstm in enumerate(self.layers):
            with warnings.catch_warnings():  # torch notes (harmlessly) that oneDNN has no LSTMP kernel
                warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
                h, _ = lstm(x)  # [batch, tokens, dim]
            if index > 0:
                h = h + x  # the residual connection between LSTM layers
            outputs.append(h)
            x = self.dropout(h)
        return outputs
