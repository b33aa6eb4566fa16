"""The reference masked-LM corruption (Devlin et al. 2019, Sec. 3.1 / App. A.1)."""

from __future__ import annotations

import pytest
import torch

from course_lib.text.masking import IGNORE_INDEX, mask_tokens

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522


def batch(rows: int = 8, tokens: int = 40, seed: int = 0) -> torch.Tensor:
    """[CLS] ordinary ids [SEP] [PAD] [PAD] per row."""
    input_ids = torch.randint(1000, VOCAB, (rows, tokens), generator=torch.Generator().manual_seed(seed))
    input_ids[:, 0], input_ids[:, -3], input_ids[:, -2:] = CLS, SEP, PAD
    return input_ids


def test_labels_special_tokens_and_untouched_input():
    input_ids = batch()
    original = input_ids.clone()
    masked, labels = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(input_ids, original)
    assert masked.dtype == input_ids.dtype and labels.dtype == torch.long and masked.shape == labels.shape
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert not chosen[:, 0].any() and not chosen[:, -3:].any()  # [CLS], [SEP], [PAD] never chosen
    assert torch.equal(masked[~chosen], input_ids[~chosen])     # unchosen tokens stay as they were
    assert (masked[chosen] == MASK).any() and (masked[chosen] == input_ids[chosen]).any()


def test_rates_on_a_large_sample():
    input_ids = batch(rows=400, tokens=250)
    masked, labels = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], generator=torch.Generator().manual_seed(2))
    chosen = labels != IGNORE_INDEX
    eligible = 400 * (250 - 4)
    assert abs(chosen.sum().item() / eligible - 0.15) < 5 * (0.15 * 0.85 / eligible) ** 0.5
    n = chosen.sum().item()
    shares = [(masked[chosen] == MASK).float().mean(), (masked[chosen] == input_ids[chosen]).float().mean()]
    for share, p in zip(shares, (0.8, 0.1)):
        assert abs(share.item() - p) < 5 * (p * (1 - p) / n) ** 0.5


def test_generator_makes_it_reproducible_and_extremes():
    input_ids = batch()
    first = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], generator=torch.Generator().manual_seed(3))
    second = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    none = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], mlm_probability=0.0)[1]
    assert (none == IGNORE_INDEX).all()
    every = mask_tokens(input_ids, MASK, VOCAB, [PAD, CLS, SEP], mlm_probability=1.0)[1]
    assert ((every != IGNORE_INDEX) == ~torch.isin(input_ids, torch.tensor([PAD, CLS, SEP]))).all()


def test_special_tokens_mask_is_respected():
    input_ids = batch()
    keep = torch.zeros_like(input_ids, dtype=torch.bool)
    keep[:, 1:5] = True
    labels = mask_tokens(input_ids, MASK, VOCAB, (), 1.0, special_tokens_mask=keep)[1]
    assert (labels[:, 1:5] == IGNORE_INDEX).all() and (labels[:, 5:-3] != IGNORE_INDEX).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=torch.zeros(2, 3)), "integer token ids"),
    (dict(mlm_probability=1.5), "mlm_probability"),
    (dict(mask_token_id=VOCAB), "mask_token_id"),
    (dict(special_tokens_mask=torch.zeros(1, 1, dtype=torch.bool)), "special_tokens_mask has shape"),
])
def test_bad_input(kwargs, message):
    arguments = dict(input_ids=batch(), mask_token_id=MASK, vocab_size=VOCAB) | kwargs
    with pytest.raises(ValueError, match=message):
        mask_tokens(**arguments)
