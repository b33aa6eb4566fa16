"""Pretraining objectives (NSP pairs, BERT batches and losses, LM windows) and the n-gram baselines."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.models.bert import BertConfig, BertForPreTraining
from course_lib.models.elmo import ElmoBiLM, ElmoConfig
from course_lib.models.gpt import GPT, GPTConfig
from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
from course_lib.pretraining.objectives import SpecialIds, bert_batch, bert_losses, lm_window_loss
from course_lib.text.batching import random_windows
from course_lib.text.next_sentence import IS_NEXT, NOT_NEXT, next_sentence_pairs
from course_lib.text.tokenizers import load_tokenizer
from course_lib.training.ngram import BigramLM, UnigramLM, best_add_k, perplexity

SPECIAL = SpecialIds(cls=2, sep=3, pad=0, mask=4, vocab_size=50)


def test_random_windows_are_contiguous_stretches_and_seeded():
    ids = torch.arange(1000)
    windows = random_windows(ids, 17, 8, torch.Generator().manual_seed(0))
    assert windows.shape == (8, 17)
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(8, 16, dtype=torch.long))
    assert torch.equal(windows, random_windows(ids, 17, 8, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="length=2000"):
        random_windows(ids, 2000, 1, torch.Generator())


def test_next_sentence_pairs_are_half_next_half_random():
    ids = torch.arange(10_000)  # position = id, so continuity is visible in the ids
    pairs = next_sentence_pairs(ids, 4000, 10, torch.Generator().manual_seed(0))
    labels = torch.tensor([p.label for p in pairs])
    assert abs(float((labels == IS_NEXT).float().mean()) - 0.5) < 0.03  # 4000 draws: 3 sigma is about 0.024
    for p in pairs:
        assert len(p.a) == len(p.b) == 10
        assert p.a == list(range(p.a[0], p.a[0] + 10))
        if p.label == IS_NEXT:
            assert p.b[0] == p.a[-1] + 1  # B is exactly the text that follows A
        else:
            assert p.label == NOT_NEXT and abs(p.b[0] - (p.a[-1] + 1)) >= 20  # never A's continuation
    with pytest.raises(ValueError, match="6 \\* segment_len"):
        next_sentence_pairs(torch.arange(50), 1, 10, torch.Generator())


def test_bert_batch_layout_segments_and_masking():
    pairs = next_sentence_pairs(torch.arange(10, 50), 3, 5, torch.Generator().manual_seed(1))
    pairs[0].b = pairs[0].b[:3]  # a shorter row, to be padded
    batch = bert_batch(pairs, SPECIAL, torch.Generator().manual_seed(0), mlm_probability=0.0)
    first = [2, *pairs[0].a, 3, *pairs[0].b, 3]
    assert batch["input_ids"][0].tolist() == first + [0, 0]
    assert batch["token_type_ids"][0].tolist() == [0] * 7 + [1] * 4 + [0, 0]
    assert batch["attention_mask"][0].tolist() == [1] * 11 + [0, 0]
    assert (batch["mlm_labels"] == -100).all()  # nothing masked at probability 0
    assert batch["next_sentence_labels"].tolist() == [p.label for p in pairs]

    masked = bert_batch(pairs, SPECIAL, torch.Generator().manual_seed(0), mlm_probability=1.0)
    chosen = masked["mlm_labels"] != -100
    special = torch.isin(batch["input_ids"], torch.tensor([0, 2, 3]))
    assert torch.equal(chosen, ~special)  # every ordinary token and no special one
    assert torch.equal(masked["mlm_labels"][chosen], batch["input_ids"][chosen])


def test_special_ids_need_a_wordpiece_vocabulary():
    assert SpecialIds.from_tokenizer(load_tokenizer("wordpiece")).mask == load_tokenizer("wordpiece").token_to_id(
        "[MASK]")
    with pytest.raises(ValueError, match="no \\[CLS\\], \\[SEP\\], \\[PAD\\], \\[MASK\\]"):
        SpecialIds.from_tokenizer(load_tokenizer("bpe"))


def test_bert_losses_equal_the_models_own_forward():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=50, context_length=32, dim=16, n_layers=1, n_heads=2)).eval()
    pairs = next_sentence_pairs(torch.randint(5, 50, (200,)), 4, 6, torch.Generator().manual_seed(0))
    batch = bert_batch(pairs, SPECIAL, torch.Generator().manual_seed(0), mlm_probability=0.3)
    losses = bert_losses(model, batch)
    reference = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                      mlm_labels=batch["mlm_labels"], next_sentence_labels=batch["next_sentence_labels"])
    torch.testing.assert_close(losses["loss"], reference.loss)
    assert 0.0 <= float(losses["mlm_accuracy"]) <= 1.0 and 0.0 <= float(losses["nsp_accuracy"]) <= 1.0


def test_lm_window_loss_for_each_kind():
    torch.manual_seed(0)
    windows = torch.randint(30, (2, 17))
    gpt = GPT(GPTConfig(vocab_size=30, context_length=17, dim=16, n_layers=1, n_heads=2)).eval()
    # GPT's forward shifts labels inside: labels = the whole window predicts tokens 2..17 from 1..16
    torch.testing.assert_close(lm_window_loss("gpt", gpt, windows), gpt(windows, labels=windows).loss)
    xl = TransformerXLLMHeadModel(TransformerXLConfig(vocab_size=30, n_layers=1, n_heads=2, dim=16, head_dim=8,
                                                      hidden_dim=32, segment_len=8, mem_len=8)).eval()
    by_hand = F.cross_entropy(xl.forward_in_segments(windows[:, :-1]).logits.flatten(0, 1), windows[:, 1:].flatten())
    torch.testing.assert_close(lm_window_loss("transformer_xl", xl, windows), by_hand)
    elmo = ElmoBiLM(ElmoConfig(vocab_size=30, dim=8, hidden_size=16, num_layers=2)).eval()
    torch.testing.assert_close(lm_window_loss("elmo", elmo, windows), elmo(windows).loss)
    with pytest.raises(ValueError, match="kind must be one of"):
        lm_window_loss("bert", gpt, windows)


def test_unigram_add_k_by_hand():
    ids = torch.tensor([0, 0, 1, 2])
    lm = UnigramLM(vocab_size=4, k=1.0).fit(ids)
    expected = torch.tensor([3, 2, 2, 1]) / 8  # (c + 1) / (4 + 4)
    torch.testing.assert_close(lm.log_probs().exp(), expected.double())
    assert math.isclose(lm.cross_entropy(torch.tensor([3, 0])), -(math.log(1 / 8) + math.log(3 / 8)) / 2)


def test_bigram_add_k_by_hand_and_normalised():
    ids = torch.tensor([0, 1, 0, 1, 0, 2])
    lm = BigramLM(vocab_size=3, k=0.5).fit(ids)
    # c(0, 1) = 2, c(0, 2) = 1, c(0) = 3 as a left context: P(1 | 0) = (2 + 0.5) / (3 + 1.5)
    assert math.isclose(lm.cross_entropy(torch.tensor([0, 1])), -math.log(2.5 / 4.5))
    assert math.isclose(lm.cross_entropy(torch.tensor([2, 2])), -math.log(0.5 / 1.5))  # unseen context: uniform
    for previous in range(3):
        total = sum(math.exp(-lm.cross_entropy(torch.tensor([previous, w]))) for w in range(3))
        assert math.isclose(total, 1.0)


def test_bigram_beats_unigram_on_a_predictable_text_and_k_is_tuned():
    ids = torch.arange(20).repeat(50)  # every token determines the next
    train, heldout = ids[:800], ids[800:]
    _, unigram = best_add_k(UnigramLM, train, heldout, 20)
    k_bi, bigram = best_add_k(BigramLM, train, heldout, 20)
    assert bigram < 0.1 < math.log(20) - 0.01 < unigram
    assert k_bi == 0.001  # the smallest k wins when the counts never lie
    assert math.isclose(perplexity(math.log(20)), 20)


def test_ngram_rejects_bad_input():
    with pytest.raises(ValueError, match="k > 0"):
        UnigramLM(10, k=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        BigramLM(10).fit(torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="at least 2"):
        BigramLM(10).fit(torch.tensor([1]))
