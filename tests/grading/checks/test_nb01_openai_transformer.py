"""Notebook 01's checks: causal attention and GPT-1's multiple-choice format pass their references, name each known
mistake, draw fresh inputs at every call, refuse answers of the wrong kind, and survive bad code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

import course_lib.grading.checks.nb01_openai_transformer  # noqa: F401  (registers causal_attention and multiple_choice_input)
from course_lib.grading import Outcome, check
from course_lib.text.task_formats import TaskTokens, multiple_choice_batch

# --- causal attention -----------------------------------------------------------------------------------------------

def attention(query, key, value, attention_mask=None, *, keep=lambda r, c: c <= r, padding="keys", scale=None,
              dim=-1, hide=float("-inf"), after=False, multiply=False):
    """A student's answer, with switches that reproduce the known mistakes."""
    tokens = query.shape[-2]
    rows, cols = torch.arange(tokens)[:, None], torch.arange(tokens)[None, :]
    visible = keep(rows, cols)
    if attention_mask is not None and padding != "ignored":
        real = attention_mask.bool() if padding != "inverted" else ~attention_mask.bool()
        visible = visible & (real[:, None, :, None] if padding == "queries" else real[:, None, None, :])
    scores = query @ key.transpose(-2, -1) / (math.sqrt(query.shape[-1]) if scale is None else scale)
    if multiply:
        scores = scores * visible
    elif not after:
        scores = scores.masked_fill(~visible, hide)
    weights = scores.softmax(dim=dim)
    if after:
        weights = weights * visible
    return weights @ value, weights


def test_causal_reference_passes_and_so_do_equivalent_answers():
    expect(check.causal_attention(attention), Outcome.PASSED, "no position sees the future")
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: attention(q, k, v, attention_mask, hide=-1e9)),
           Outcome.PASSED)

    def fused(query, key, value, attention_mask=None):  # torch's kernel for the output, explicit weights
        weights = attention(query, key, value, attention_mask)[1]
        if attention_mask is None:
            return F.scaled_dot_product_attention(query, key, value, is_causal=True), weights
        return weights @ value, weights

    expect(check.causal_attention(fused), Outcome.PASSED)


@pytest.mark.parametrize("mistake, message, hint", [
    (dict(keep=lambda r, c: torch.ones_like(r * c, dtype=torch.bool)), "'no causal mask'", "to the right"),
    (dict(keep=lambda r, c: c >= r), "'the mask hides the past'", "torch.tril"),
    (dict(keep=lambda r, c: c < r), "'a token cannot see itself'", "keep the diagonal"),
    (dict(multiply=True), "'scores multiplied by the mask'", "exp(0) = 1"),
    (dict(after=True), "'mask applied after the softmax'", "before the softmax"),
    (dict(scale=1.0), "'forgot sqrt(d_k)'", "sqrt(d_k)"),
    (dict(dim=-2), "'softmax over the queries'", "dim=-1"),
    (dict(padding="ignored"), "(left padding) wrong weights: this looks like 'padding keys not hidden'",
     "padded KEYS"),
    (dict(padding="queries"), "'padding keys not hidden'", "the last axis"),
    (dict(padding="inverted"), "'padding mask inverted'", "1 for a real token"),
])
def test_causal_known_mistakes(mistake, message, hint):
    wrong = lambda q, k, v, attention_mask=None: attention(q, k, v, attention_mask, **mistake)  # noqa: E731
    expect(check.causal_attention(wrong), Outcome.FAILED, message, hint)


def test_causal_divided_by_d_k_and_a_partial_leak():
    wrong = lambda q, k, v, attention_mask=None: attention(q, k, v, attention_mask, scale=q.shape[-1])  # noqa: E731
    expect(check.causal_attention(wrong), Outcome.FAILED, "'divided by d_k'", "not by d_k")

    def leaks_one(query, key, value, attention_mask=None):  # sees exactly one token ahead
        return attention(query, key, value, attention_mask, keep=lambda r, c: c <= r + 1)

    expect(check.causal_attention(leaks_one), Outcome.FAILED, "the future leaks", "above the diagonal")


def test_causal_nan_rows_are_named_as_nan_with_the_example_that_has_them():
    def hand_written_softmax(query, key, value, attention_mask=None):  # exp without the row's max: inf / inf
        tokens = query.shape[-2]
        visible = torch.ones(tokens, tokens).tril().bool()
        scores = (query @ key.transpose(-2, -1) * 100.0).masked_fill(~visible, float("-inf"))
        weights = scores.exp() / scores.exp().sum(-1, keepdim=True)
        return weights @ value, weights

    for seed in range(3):
        result = check.causal_attention(hand_written_softmax, seed=seed)
        expect(result, Outcome.FAILED, "your weights hold NaN: example", "subtract each row's max")
        example, head = (int(part.split()[-1]) for part in result.message.split(": example")[1].split(",")[:2])
        assert f"Your weights[{example}, {head}]" in str(result), str(result)  # the matrix shown is the one with NaN
        assert "future leaks" not in str(result)


def test_causal_output_and_shape_mistakes():
    def swapped(q, k, v, attention_mask=None):
        output, weights = attention(q, k, v, attention_mask)
        return weights, output

    expect(check.causal_attention(swapped, seed=3), Outcome.FAILED)  # shapes differ unless d_k == tokens
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: (attention(q, k, v, attention_mask)[1] @ v * 2,
                                                                        attention(q, k, v, attention_mask)[1])),
           Outcome.FAILED, "the output is not", "weights @ value")
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: attention(q, k, v, attention_mask)[1]),
           Outcome.FAILED, "list of two tensors")
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: None), Outcome.FAILED, "is None")
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: tuple(
        t.numpy() for t in attention(q, k, v, attention_mask))), Outcome.FAILED, "should be a torch.Tensor")
    expect(check.causal_attention(lambda q, k, v, attention_mask=None: tuple(
        t[0] for t in attention(q, k, v, attention_mask))), Outcome.FAILED, "of shape")


def test_causal_swapped_order_is_named():
    calls = []

    def swapped(q, k, v, attention_mask=None):
        calls.append(tuple(q.shape))
        output, weights = attention(q, k, v, attention_mask)
        return weights, output

    for seed in range(20):
        result = check.causal_attention(swapped, seed=seed)
        if calls[-1][-1] != calls[-1][-2]:
            expect(result, Outcome.FAILED, "swapped order")
            return
    pytest.fail("no drawn case had d_k != tokens")


def test_causal_fresh_inputs_each_call_and_seed_repeats_them():
    seen = []

    def spy(query, key, value, attention_mask=None):
        seen.append((tuple(query.shape), float(query.sum())))
        return attention(query, key, value, attention_mask)

    check.causal_attention(spy)
    check.causal_attention(spy)
    assert seen[0:2] != seen[2:4]
    result = check.causal_attention(spy, seed=123)
    check.causal_attention(spy, seed=123)
    assert seen[4:6] == seen[6:8] and result.seed == 123


def test_causal_refuses_mutation_and_survives_bad_code():
    def in_place(query, key, value, attention_mask=None):
        query.mul_(2)
        return attention(query / 2, key, value, attention_mask)

    expect(check.causal_attention(in_place), Outcome.FAILED, "changed its input `query`")

    def stub(query, key, value, attention_mask=None):
        raise NotImplementedError

    expect(check.causal_attention(stub), Outcome.NOT_ATTEMPTED)

    def crashes(query, key, value, attention_mask=None):
        return query @ torch.ones(query.shape[-1] + 1, 2)  # wrong shapes for a matmul

    result = check.causal_attention(crashes)
    expect(result, Outcome.ERROR, "your code raised RuntimeError", "transpose(-2, -1)")
    expect(check.causal_attention(lambda q, k: None), Outcome.FAILED, "signature")
    expect(check.causal_attention("not a function"), Outcome.FAILED, "expected a function")


def test_causal_endless_loop_is_stopped():
    def endless(query, key, value, attention_mask=None):
        while True:
            pass

    expect(check.causal_attention(endless, time_limit=1), Outcome.TIMED_OUT, "took longer than 1 s")


# --- multiple-choice input ------------------------------------------------------------------------------------------

def mc_answer(layout=None, pad_with=None, left=False, invert=False, cut="context-start"):
    """A student's answer, with switches that reproduce the known mistakes."""
    def fn(context, answers, tokens, max_length):
        rows = []
        for answer in answers:
            row = (layout or (lambda c, a, t: [t.start, *c, t.delimiter, *a, t.extract]))(context, answer, tokens)
            excess = len(row) - max_length
            if excess > 0 and cut == "context-start":
                row = [tokens.start, *context[excess:], tokens.delimiter, *answer, tokens.extract]
            elif excess > 0 and cut == "context-end":
                row = [tokens.start, *context[:-excess], tokens.delimiter, *answer, tokens.extract]
            elif excess > 0 and cut == "row-end":
                row = row[:max_length]
            rows.append(row)
        length = max(map(len, rows))
        fill = tokens.pad if pad_with is None else pad_with
        padding = [[fill] * (length - len(r)) for r in rows]
        ids = [p + r if left else r + p for r, p in zip(rows, padding)]
        mask = [[0] * len(p) + [1] * len(r) if left else [1] * len(r) + [0] * len(p) for r, p in zip(rows, padding)]
        mask = torch.tensor(mask)
        return torch.tensor(ids), 1 - mask if invert else mask
    return fn


def test_multiple_choice_reference_passes():
    expect(check.multiple_choice_input(multiple_choice_batch), Outcome.PASSED, "one row per candidate")
    expect(check.multiple_choice_input(mc_answer()), Outcome.PASSED)


@pytest.mark.parametrize("answer, message, hint", [
    (mc_answer(layout=lambda c, a, t: [*c, t.delimiter, *a, t.extract]), "'no start token'", "tokens.start"),
    (mc_answer(layout=lambda c, a, t: [t.start, *c, t.delimiter, *a]), "'no extract token'", "tokens.extract"),
    (mc_answer(layout=lambda c, a, t: [t.start, *c, *a, t.extract]), "'no delimiter'", "tokens.delimiter"),
    (mc_answer(layout=lambda c, a, t: [t.start, *a, t.delimiter, *c, t.extract]), "'answer before the context'",
     "context comes first"),
    (mc_answer(layout=lambda c, a, t: [t.start, *c, t.extract, *a, t.delimiter]),
     "'delimiter and extract swapped'", "extract closes"),
    (mc_answer(left=True), "'left padding'", "pad on the right"),
    (mc_answer(pad_with=0), "'padded with 0'", "tokens.pad"),
    (mc_answer(invert=True), "'mask inverted'", "1 on real tokens"),
    (mc_answer(cut="context-end"), "(rows longer than max_length) this looks like 'context cut at its end'",
     "START of the context"),
    (mc_answer(cut="row-end"), "'row cut at its end'", "never cut the answer"),
    (mc_answer(cut="none"), "'not truncated'", "loses tokens from the start"),
])
def test_multiple_choice_known_mistakes(answer, message, hint):
    expect(check.multiple_choice_input(answer), Outcome.FAILED, message, hint)


def test_multiple_choice_wrong_kinds_and_mutation():
    def as_lists(context, answers, tokens, max_length):
        ids, mask = multiple_choice_batch(context, answers, tokens, max_length)
        return ids.tolist(), mask.tolist()

    expect(check.multiple_choice_input(as_lists), Outcome.FAILED, "should be a torch.Tensor", "torch.tensor(rows")
    expect(check.multiple_choice_input(lambda c, a, t, m: tuple(x.float() for x in multiple_choice_batch(c, a, t, m))),
           Outcome.FAILED, "torch.long tensor")
    expect(check.multiple_choice_input(lambda c, a, t, m: multiple_choice_batch(c, a, t, m)[0]), Outcome.FAILED,
           "list of two tensors")
    expect(check.multiple_choice_input(lambda c, a, t, m: tuple(np.asarray(x) for x in multiple_choice_batch(c, a, t,
                                                                                                            m))),
           Outcome.FAILED, "should be a torch.Tensor")

    def pops(context, answers, tokens, max_length):
        context.insert(0, tokens.start)  # builds the row in the caller's list
        return multiple_choice_batch(context[1:], answers, tokens, max_length)

    expect(check.multiple_choice_input(pops), Outcome.FAILED, "changed its input `context`")

    def one_row_wrong(context, answers, tokens, max_length):
        ids, mask = multiple_choice_batch(context, answers, tokens, max_length)
        ids = ids.clone()
        ids[0, 1] = ids[0, 1] + 1
        return ids, mask

    expect(check.multiple_choice_input(one_row_wrong), Outcome.FAILED, "wrong input_ids", "each row")

    def mask_one_off(context, answers, tokens, max_length):
        ids, mask = multiple_choice_batch(context, answers, tokens, max_length)
        return ids, torch.ones_like(mask)

    result = check.multiple_choice_input(mask_one_off, seed=1)
    assert result.outcome is Outcome.FAILED and ("attention_mask row" in str(result) or "looks like" in str(result))


def test_multiple_choice_fresh_inputs_and_bad_code():
    seen = []

    def spy(context, answers, tokens, max_length):
        seen.append((tuple(context), tokens, max_length))
        return multiple_choice_batch(context, answers, tokens, max_length)

    check.multiple_choice_input(spy)
    check.multiple_choice_input(spy)
    assert seen[0:2] != seen[2:4]
    assert all(t.pad != 0 for _, t, _ in seen)  # so that padding with 0 is told apart

    def stub(context, answers, tokens, max_length):
        raise NotImplementedError

    expect(check.multiple_choice_input(stub), Outcome.NOT_ATTEMPTED)
    expect(check.multiple_choice_input(lambda c, a, t, m: c + t), Outcome.ERROR, "your code raised TypeError")


def test_library_multiple_choice_batch():
    tokens = TaskTokens(start=50, delimiter=51, extract=52, pad=7)
    ids, mask = multiple_choice_batch([1, 2, 3, 4], [[9], [8, 8, 8]], tokens, max_length=8)
    assert ids.tolist() == [[50, 1, 2, 3, 4, 51, 9, 52], [50, 3, 4, 51, 8, 8, 8, 52]]
    assert mask.tolist() == [[1] * 8, [1] * 8]
    ids, mask = multiple_choice_batch([1, 2], [[9], [8, 8]], tokens)
    assert ids.tolist() == [[50, 1, 2, 51, 9, 52, 7], [50, 1, 2, 51, 8, 8, 52]] and mask[0].tolist()[-1] == 0
    with pytest.raises(ValueError, match="no room for the context"):
        multiple_choice_batch([1, 2], [[9] * 6, [9]], tokens, max_length=8)


def test_causal_padding_rows_are_not_graded_and_a_padding_leak_is_named():
    def nan_in_padding_rows(query, key, value, attention_mask=None):
        output, weights = attention(query, key, value, attention_mask)
        if attention_mask is not None:  # e.g. -inf on padding queries too: those rows are all hidden, NaN
            rows = (attention_mask == 0)[:, None, :, None]
            output, weights = output.masked_fill(rows, float("nan")), weights.masked_fill(rows, float("nan"))
        return output, weights

    expect(check.causal_attention(nan_in_padding_rows), Outcome.PASSED)

    def sees_last_padding(query, key, value, attention_mask=None):
        if attention_mask is None:
            return attention(query, key, value)
        shifted = attention_mask.clone()
        shifted[:, :-1] |= attention_mask[:, 1:]  # the padding position just before the text counts as a token
        return attention(query, key, value, shifted)

    result = check.causal_attention(sees_last_padding)  # with one padding position this is "padding not hidden"
    assert result.outcome is Outcome.FAILED and ("which is padding" in str(result) or "padding keys not hidden" in
                                                 str(result)), str(result)
    expect(check.causal_attention(sees_last_padding, seed=0), Outcome.FAILED, "which is padding", "padded keys too")


# --- the pieces notebook 01's task is built from: task tokens, a grown vocabulary, the graded task ----------------

def test_task_tokens_frame_texts_and_pairs():
    from course_lib.text.batching import text_batches
    from course_lib.text.task_formats import add_task_tokens
    from course_lib.text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("bpe")
    framed, tokens = add_task_tokens(tokenizer)
    size = tokenizer.get_vocab_size()
    assert (tokens.start, tokens.delimiter, tokens.extract, tokens.pad) == (size, size + 1, size + 2, 0)
    assert tokenizer.get_vocab_size() == size and tokenizer.encode("Hi there").ids[0] != size  # original unchanged
    text = tokenizer.encode("Hi there").ids
    assert framed.encode("Hi there").ids == [tokens.start, *text, tokens.extract]
    assert framed.encode("Hi", "there").ids == [tokens.start, *tokenizer.encode("Hi").ids, tokens.delimiter,
                                                *tokenizer.encode("there").ids, tokens.extract]
    batch = next(iter(text_batches(["a b c d e f g h i j"], [1], framed, max_length=6)))
    assert batch["input_ids"][0].tolist()[0] == tokens.start and batch["input_ids"][0].tolist()[-1] == tokens.extract
    assert batch["input_ids"].shape == (1, 6)  # truncation keeps room for both task tokens
    with pytest.raises(ValueError, match="already has"):
        add_task_tokens(framed)


def test_load_lm_weights_keeps_the_lm_and_adds_random_task_rows():
    from course_lib.models.gpt import GPT, GPTConfig, GPTForSequenceClassification
    from course_lib.models.gpt_heads import load_lm_weights, with_new_tokens

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=40, context_length=16, dim=16, n_layers=2, n_heads=2, pre_norm=False,
                       final_norm=False, dropout=0.0, attn_dropout=0.0)
    lm = GPT(config).eval()
    model = load_lm_weights(GPTForSequenceClassification(with_new_tokens(config, 3), n_classes=2), lm).eval()
    assert config.vocab_size == 40 and model.gpt.config.vocab_size == 43  # the LM's config is not changed
    table = model.gpt.transformer.token_embedding.weight
    assert torch.equal(table[:40], lm.transformer.token_embedding.weight) and table[40:].abs().sum() > 0
    assert model.gpt.lm_head.weight is table  # still tied
    ids = torch.randint(40, (2, 7))
    torch.testing.assert_close(model.gpt(ids).logits[..., :40], lm(ids).logits)
    with pytest.raises(ValueError, match="differ"):
        load_lm_weights(GPTForSequenceClassification(with_new_tokens(GPTConfig(
            vocab_size=40, context_length=16, dim=16, n_layers=1, n_heads=2), 3), n_classes=2), lm)
    with pytest.raises(ValueError, match="n_new"):
        with_new_tokens(config, -1)


def test_gpt1_spam_task_is_graded_by_the_fine_tuning_check(monkeypatch):
    from course_lib.grading.fine_tuning.tasks import FINE_TUNING_TASKS, GPT1Body, SpamFineTuning

    assert FINE_TUNING_TASKS["gpt1-spam-150"].labels == 150  # notebook 01's exercise
    task = SpamFineTuning(labels=32, test_messages=64, body=GPT1Body())  # a small one, for this test only
    monkeypatch.setitem(FINE_TUNING_TASKS, "gpt1-spam-test", task)
    first, second = task.new_model(seed=1), task.new_model(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert first.lm_weight == 0.5 and first.gpt.config.vocab_size == 8192 + 3
    batch = next(iter(task.training_batches(seed=1)))
    tokens = batch["input_ids"][0][batch["attention_mask"][0] == 1].tolist()
    assert tokens[0] == 8192 and tokens[-1] == 8194  # <start> message <extract>
    assert len(task.test_labels()) == 64

    def one_epoch(model, batches):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for batch in batches:
            loss = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    result = check.fine_tuning(one_epoch, task="gpt1-spam-test", min_accuracy=0.0, min_f1=0.0, max_epochs=1)
    expect(result, Outcome.PASSED, "1.00 epochs of 32 labels")
    twice = lambda model, batches: one_epoch(one_epoch(model, batches), batches)  # noqa: E731
    expect(check.fine_tuning(twice, task="gpt1-spam-test", min_accuracy=0.0, min_f1=0.0, max_epochs=1),
           Outcome.FAILED, "over the budget")
