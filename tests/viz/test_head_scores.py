"""course_lib.viz.head_scores: the three pattern scores on heads built to have one pattern each."""

from __future__ import annotations

import pytest
import torch

from course_lib.viz.head_scores import PATTERNS, best_head, head_pattern_scores, uniform_scores


def causal_uniform(tokens: int) -> torch.Tensor:
    """Every query spreads its weight evenly over the keys at or before it: [T, T]."""
    weights = torch.ones(tokens, tokens).tril()
    return weights / weights.sum(-1, keepdim=True)


def heads(tokens: int = 6) -> torch.Tensor:
    """One layer of 4 heads: previous token, first token, itself, even spread -> [1 layer, 1 batch, 4, T, T]."""
    previous = torch.zeros(tokens, tokens)
    previous[0, 0] = 1.0
    previous[torch.arange(1, tokens), torch.arange(tokens - 1)] = 1.0
    first = torch.zeros(tokens, tokens)
    first[:, 0] = 1.0
    itself = torch.eye(tokens)
    return torch.stack([previous, first, itself, causal_uniform(tokens)])[None, None]


def test_each_built_head_scores_one_on_its_pattern_and_the_even_head_scores_the_uniform_value():
    scores = head_pattern_scores(heads())
    assert set(scores) == set(PATTERNS) and all(s.shape == (1, 4) for s in scores.values())
    for index, pattern in enumerate(PATTERNS):
        assert scores[pattern][0, index] == pytest.approx(1.0)
        assert best_head(scores[pattern]) == (0, index)
    for pattern in PATTERNS:
        assert scores[pattern][0, 3] == pytest.approx(uniform_scores(6))


def test_a_tuple_of_layers_is_accepted_and_the_example_is_chosen():
    layer = heads()[0]                                             # [1, 4, T, T]
    batch = torch.cat([layer.roll(1, dims=1), layer])               # example 1 holds the heads in order
    scores = head_pattern_scores((batch, batch), example=1)
    assert scores["itself"].shape == (2, 4) and best_head(scores["itself"]) == (0, 2)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        head_pattern_scores(torch.zeros(1, 1, 2, 3, 4))
    with pytest.raises(ValueError):
        uniform_scores(1)
