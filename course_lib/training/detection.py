"""Statistics of generated text: repetition, token ranks (GLTR) and how well they tell generated from real text.

- ``distinct_n`` / ``repeated_ngram_share``: repetition of a generated sequence (Li et al. 2016's distinct-n; the
  share of n-grams that already occurred earlier in the same text, a measure of loops).
- ``token_ranks``: the rank of every actual next token among the model's predictions (0 = the model's first
  choice), the statistic GLTR draws (Gehrmann, Strobelt, Rush 2019, "GLTR: Statistical Detection and Visualization
  of Generated Text"). Sampled text sits in the model's top ranks more than human text does.
- ``auc``: the area under the ROC curve of a score that should be higher for one group (Mann-Whitney form: the
  probability that a random member of ``positive`` scores above a random member of ``negative``; ties count half).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The consecutive n-grams of a sequence."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ids = list(ids)
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def distinct_n(ids: Sequence[int], n: int) -> float:
    """Distinct n-grams / all n-grams of one sequence (1.0: no n-gram repeats; NaN when there is no n-gram)."""
    grams = ngrams(ids, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_share(ids: Sequence[int], n: int) -> float:
    """Share of the n-grams that already occurred earlier in the same sequence (0.0: no loop)."""
    grams = ngrams(ids, n)
    if not grams:
        return float("nan")
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


@torch.no_grad()
def token_ranks(model: nn.Module, ids: torch.Tensor, start: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ranks, log_probs)`` of tokens ``start..T-1`` of ``ids [batch, T]``, each given the tokens before it.

    ``ranks[b, i]`` is how many vocabulary entries the model found more likely than the actual token (0 = its first
    choice); ``log_probs[b, i]`` the actual token's log-probability. Both ``[batch, T - start]``.
    """
    if ids.dim() != 2 or not 1 <= start < ids.size(1):
        raise ValueError(f"need ids [batch, T] and 1 <= start < T, got shape {tuple(ids.shape)} and start={start}")
    was_training = model.training
    model.eval()
    logits = model(ids).logits[:, start - 1:-1].float()  # [batch, T - start, vocab]: predictions of tokens start..
    model.train(was_training)
    actual = ids[:, start:]  # [batch, T - start]
    log_probs = logits.log_softmax(-1)
    chosen = log_probs.gather(-1, actual[..., None])  # [batch, T - start, 1]
    ranks = (log_probs > chosen).sum(-1)  # entries strictly more likely than the actual token
    return ranks, chosen[..., 0]


def rank_buckets(ranks: torch.Tensor, edges: Sequence[int] = (10, 100, 1000)) -> list[float]:
    """Shares of ranks in [0, e1), [e1, e2), ..., [e_last, inf): GLTR's colours (top 10, top 100, top 1000, rest)."""
    ranks = ranks.flatten()
    bounds = [0, *edges, None]
    return [float(((ranks >= low) & (ranks < high if high is not None else True)).float().mean())
            for low, high in zip(bounds[:-1], bounds[1:])]


def auc(positive: Sequence[float] | torch.Tensor, negative: Sequence[float] | torch.Tensor) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2 (0.5: no better than chance)."""
    positive = torch.as_tensor(positive, dtype=torch.float64).flatten()
    negative = torch.as_tensor(negative, dtype=torch.float64).flatten()
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    greater = (positive[:, None] > negative[None, :]).double()
    ties = (positive[:, None] == negative[None, :]).double()
    return float((greater + 0.5 * ties).mean())
