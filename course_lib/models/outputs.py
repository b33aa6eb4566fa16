"""The small output record every course_lib model returns, and the size checks every transformer config runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """What a forward pass returns; fields a model does not produce stay ``None``.

    - ``logits``: ``[batch, tokens, vocab]`` for language models, ``[batch, classes]`` for classifiers.
    - ``hidden_states``: the embedding output followed by every layer's output, each ``[batch, tokens, dim]``.
    - ``attentions``: one ``[batch, heads, query, key]`` tensor per layer (the format bertviz takes),
      only when the forward pass was asked for them (``output_attentions=True``).
    - ``loss``: a scalar when labels were given.
    - ``pooled``: BERT's pooled [CLS] vector ``[batch, dim]``.
    - ``mems``: Transformer-XL's per-layer memory for the next segment.
    """

    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    loss: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    mems: list[torch.Tensor] | None = None


def check_sizes(config, names: tuple[str, ...]) -> None:
    """ValueError unless every named size is >= 1 and ``dim`` splits evenly into ``n_heads`` heads."""
    if config.dim % config.n_heads != 0:
        raise ValueError(f"dim ({config.dim}) must be divisible by n_heads ({config.n_heads})")
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
