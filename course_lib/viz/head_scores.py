"""What a head does, as a number: the share of attention it puts on the previous token, the first token, itself.

Clark et al. (2019, "What Does BERT Look At?", Sec. 3) sort BERT's heads by the same kinds of average: heads that
attend "broadly", to the previous or next token, to [SEP] or [CLS]; Voita et al. (2019, Sec. 4) call the
previous-token heads "positional". For a causal model the next token is hidden, so the three patterns are

- ``previous token``: mean over queries i >= 1 of the weight on key i - 1;
- ``first token``: mean over queries i >= 1 of the weight on key 0 (a "no-op" sink: a head with nothing to do
  parks its weight there, Clark et al. Sec. 3.2 for [SEP]);
- ``itself``: mean over queries i >= 1 of the weight on key i.

Query 0 is left out: in a causal model it can only look at itself. A uniform head over i + 1 keys scores
``1 / (i + 1)`` on each pattern, so compare a head with ``uniform_scores``, not with 0.

    scores = head_pattern_scores(attentions)          # {pattern: [layers, heads]}
    layer, head = best_head(scores["previous token"])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PATTERNS = ("previous token", "first token", "itself")


def head_pattern_scores(attentions: Sequence[torch.Tensor] | torch.Tensor, example: int = 0) -> dict[str, torch.Tensor]:
    """``attentions``: per layer ``[batch, heads, query, key]`` (or stacked) -> ``{pattern: [layers, heads]}``."""
    stacked = torch.stack(list(attentions)) if not isinstance(attentions, torch.Tensor) else attentions
    if stacked.dim() != 5 or stacked.size(-1) != stacked.size(-2) or stacked.size(-1) < 2:
        raise ValueError(f"need [layers, batch, heads, T, T] with T >= 2 (one example's causal self-attention), got "
                         f"{tuple(stacked.shape)}")
    weights = stacked[:, example].detach().float()  # [layers, heads, T, T]
    queries = torch.arange(1, weights.size(-1), device=weights.device)
    return {
        "previous token": weights[..., queries, queries - 1].mean(-1),
        "first token": weights[..., queries, 0].mean(-1),
        "itself": weights[..., queries, queries].mean(-1),
    }


def uniform_scores(tokens: int) -> float:
    """What a head spreading its weight evenly over the visible keys scores on each pattern: mean of 1 / (i + 1)."""
    if tokens < 2:
        raise ValueError(f"need at least 2 tokens, got {tokens}")
    return sum(1.0 / (i + 1) for i in range(1, tokens)) / (tokens - 1)


def best_head(scores: torch.Tensor) -> tuple[int, int]:
    """``(layer, head)`` of the largest entry of a ``[layers, heads]`` score."""
    index = int(scores.argmax())
    return divmod(index, scores.size(1))
