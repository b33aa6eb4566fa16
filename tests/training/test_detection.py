"""course_lib.training.detection: repetition statistics, GLTR token ranks and the AUC, on hand-checked cases."""

import math

import pytest
import torch

from course_lib.models.gpt import GPT, GPTConfig
from course_lib.training.detection import auc, distinct_n, ngrams, rank_buckets, repeated_ngram_share, token_ranks


def test_repetition_statistics():
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    assert distinct_n([1, 2, 1, 2, 1, 2], 2) == pytest.approx(2 / 5)
    assert repeated_ngram_share([1, 2, 1, 2, 1, 2], 2) == pytest.approx(3 / 5)
    assert repeated_ngram_share([1, 2, 3, 4], 2) == 0.0 and distinct_n([1, 2, 3, 4], 3) == 1.0
    assert math.isnan(distinct_n([1], 2)) and math.isnan(repeated_ngram_share([], 1))
    with pytest.raises(ValueError):
        ngrams([1, 2], 0)


def test_auc_is_the_mann_whitney_probability():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 2], [1, 2]) == 0.5
    assert auc([2, 0], [1]) == 0.5
    with pytest.raises(ValueError):
        auc([], [1])


def test_token_ranks_against_a_direct_computation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context_length=16, dim=16, n_layers=1, n_heads=2)).train()
    ids = torch.randint(50, (2, 10))
    ranks, log_probs = token_ranks(model, ids, start=3)
    assert ranks.shape == log_probs.shape == (2, 7) and model.training  # mode restored
    with torch.no_grad():
        logits = model.eval()(ids).logits
    for b in range(2):
        for t in range(3, 10):
            scores = logits[b, t - 1].log_softmax(-1)
            assert ranks[b, t - 3] == int((scores > scores[ids[b, t]]).sum())
            assert log_probs[b, t - 3] == pytest.approx(float(scores[ids[b, t]]), abs=1e-5)
    greedy = logits[:, :-1].argmax(-1)
    assert (token_ranks(model, torch.cat([ids[:, :1], greedy[:, :1]], 1))[0] == 0).all()
    with pytest.raises(ValueError):
        token_ranks(model, ids, start=10)


def test_rank_buckets_share_out_every_rank():
    shares = rank_buckets(torch.tensor([0, 9, 10, 99, 100, 5000]))
    assert shares == pytest.approx([2 / 6, 2 / 6, 1 / 6, 1 / 6]) and sum(shares) == pytest.approx(1.0)
