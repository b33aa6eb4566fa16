"""Notebook 05's checks: top-k / nucleus filtering and the pre-LN stack (with the scaled init) pass their references, name each known
mistake, draw fresh inputs at every call, refuse answers of the wrong kind and changed inputs; the LM fine-tuning
check owns its model, text and held-out split, counts tokens, and refuses leaks, empty training and other models."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from check_helpers import expect, one_thread_feedback_mode  # noqa: F401  (the fixture)
from torch import nn

import course_lib.grading.checks.nb05_gpt2  # noqa: F401  (registers sampling_filters, pre_ln_stack, lm_fine_tuning)
from course_lib.grading import Outcome, check
from course_lib.grading.fine_tuning.lm_tasks import get_lm_task, message_stream
from course_lib.text.spam import load_spam


pytestmark = pytest.mark.usefixtures("one_thread_feedback_mode")  # every test: feedback mode, one thread


# --- top-k and nucleus ----------------------------------------------------------------------------------------------

def top_k(logits, k, *, keep=None, largest=True, renormalise=True, strict=False):
    """A student's top-k, with switches that reproduce the known mistakes."""
    kept = k if keep is None else keep
    values, indices = logits.topk(kept, -1, largest=largest)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, indices, True)
    if strict:  # `logits > kth` drops the k-th itself
        mask = logits > values[..., -1:]
    if not renormalise:
        return logits.softmax(-1) * mask
    return logits.masked_fill(~mask, float("-inf")).softmax(-1)


def nucleus(logits, p, *, mistake=None):
    """A student's nucleus (Hugging Face's recipe), with switches that reproduce the known mistakes."""
    ordered, order = logits.sort(-1, descending=mistake != "ascending")
    probabilities = ordered.softmax(-1)
    cumulative = probabilities.cumsum(-1)
    remove = cumulative > p
    if mistake != "no shift":
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses p
        if mistake != "forgot the first":
            remove[..., 0] = False
    if mistake == "not renormalised":
        kept = probabilities.masked_fill(remove, 0.0)
    else:
        kept = ordered.masked_fill(remove, float("-inf")).softmax(-1)
    if mistake == "sorted order":
        return kept
    return torch.zeros_like(kept).scatter(-1, order, kept)


def test_references_pass_and_so_do_equivalent_answers():
    expect(check.sampling_filters(top_k, nucleus), Outcome.PASSED, "renormalised, in vocabulary order")

    def top_k_by_threshold(logits, k):
        kth = logits.topk(k, -1).values[..., -1:]
        return F.softmax(torch.where(logits < kth, torch.full_like(logits, -1e9), logits), dim=-1)

    def nucleus_mass_above(logits, p):
        probabilities, order = logits.softmax(-1).sort(-1, descending=True)
        keep = torch.zeros_like(probabilities, dtype=torch.bool).scatter(
            -1, order, probabilities.cumsum(-1) - probabilities < p)
        kept = logits.softmax(-1) * keep
        return kept / kept.sum(-1, keepdim=True)

    for seed in range(5):
        expect(check.sampling_filters(top_k_by_threshold, nucleus_mass_above, seed=seed), Outcome.PASSED)


@pytest.mark.parametrize("wrong, message, hint", [
    (dict(keep_offset=1), "'k + 1 kept'", "off by one"),
    (dict(strict=True), "'k - 1 kept'", "the k-th largest itself stays"),
    (dict(largest=False), "'least likely kept'", "LARGEST"),
    (dict(renormalise=False), "'not renormalised'", "renormalise"),
])
def test_top_k_mistakes_are_named(wrong, message, hint):
    offset = wrong.pop("keep_offset", 0)
    student = lambda logits, k: top_k(logits, k, keep=k + offset if offset else None, **wrong)  # noqa: E731
    expect(check.sampling_filters(student, nucleus), Outcome.FAILED, message, hint)


def test_top_k_in_sorted_order_is_named():
    def sorted_order(logits, k):
        return torch.zeros_like(logits).scatter(-1, torch.arange(k).expand(logits.size(0), k),
                                                logits.topk(k, -1).values.softmax(-1))

    expect(check.sampling_filters(sorted_order, nucleus), Outcome.FAILED, "'sorted order'", "scatter")


@pytest.mark.parametrize("mistake, message, hint", [
    ("no shift", "'cumsum includes the token'", "off by one in the cumulative sum"),
    ("ascending", "'least likely first'", "descending"),
    ("not renormalised", "'not renormalised'", "renormalise"),
    ("sorted order", "'sorted order'", "scatter"),
    ("forgot the first", "you dropped the most likely token", "always stays"),
])
def test_nucleus_mistakes_are_named(mistake, message, hint):
    expect(check.sampling_filters(top_k, lambda logits, p: nucleus(logits, p, mistake=mistake)), Outcome.FAILED,
           message, hint)


def test_nucleus_unsorted_and_one_too_many():
    def unsorted(logits, p):
        probabilities = logits.softmax(-1)
        keep = probabilities.cumsum(-1) - probabilities < p
        return logits.masked_fill(~keep, float("-inf")).softmax(-1)

    def one_too_many(logits, p):
        ordered, order = logits.sort(-1, descending=True)
        probabilities = ordered.softmax(-1)
        above = probabilities.cumsum(-1) - probabilities
        keep = torch.cat([torch.ones_like(above[..., :1], dtype=torch.bool), above[..., :-1] < p], -1)
        kept = ordered.masked_fill(~keep, float("-inf")).softmax(-1)
        return torch.zeros_like(kept).scatter(-1, order, kept)

    expect(check.sampling_filters(top_k, unsorted, seed=1), Outcome.FAILED, "'unsorted cumsum'", "sort")
    expect(check.sampling_filters(top_k, one_too_many, seed=1), Outcome.FAILED, "'one token too many'", "one more")


def test_filters_refuse_wrong_kinds_logits_and_hard_coded_sizes():
    expect(check.sampling_filters(lambda logits, k: top_k(logits, k).numpy(), nucleus), Outcome.FAILED,
           "should be a torch.Tensor")
    expect(check.sampling_filters(lambda logits, k: top_k(logits, k).tolist(), nucleus), Outcome.FAILED,
           "should be a torch.Tensor")
    expect(check.sampling_filters(lambda logits, k: None, nucleus), Outcome.FAILED, "is None")

    class Sneaky(torch.Tensor):
        pass

    expect(check.sampling_filters(lambda logits, k: top_k(logits, k).as_subclass(Sneaky), nucleus), Outcome.FAILED,
           "subclass")
    filtered_logits = lambda logits, k: logits.masked_fill(top_k(logits, k) == 0, float("-inf"))  # noqa: E731
    expect(check.sampling_filters(filtered_logits, nucleus), Outcome.FAILED, "those are logits", "softmax")

    def hard_coded(logits, k):  # written for a vocabulary of 8 tokens (the check draws 9 to 40)
        return top_k(logits, k)[:, :8]

    expect(check.sampling_filters(hard_coded, nucleus), Outcome.FAILED, "of shape")
    expect(check.sampling_filters(lambda logits, k: top_k(logits, k).double(), nucleus), Outcome.PASSED)


def test_filters_refuse_changed_inputs_and_survive_bad_code():
    def in_place(logits, k):
        kth = logits.topk(k, -1).values[..., -1:]
        return logits.masked_fill_(logits < kth, float("-inf")).softmax(-1)

    expect(check.sampling_filters(in_place, nucleus), Outcome.FAILED, "changed its input `logits`", "clone")

    def stub(logits, k):
        raise NotImplementedError

    expect(check.sampling_filters(stub, nucleus), Outcome.NOT_ATTEMPTED)
    expect(check.sampling_filters(top_k, stub), Outcome.NOT_ATTEMPTED)
    expect(check.sampling_filters(lambda logits, k: logits.topk(k + 100), nucleus), Outcome.ERROR, "your code raised")
    expect(check.sampling_filters(lambda logits: logits, nucleus), Outcome.FAILED, "signature")


def test_filters_draw_fresh_inputs_and_seed_repeats_them():
    seen = []

    def spy(logits, k):
        seen.append((tuple(logits.shape), float(logits.sum()), k))
        return top_k(logits, k)

    check.sampling_filters(spy, nucleus)
    check.sampling_filters(spy, nucleus)
    assert seen[0:2] != seen[2:4]
    result = check.sampling_filters(spy, nucleus, seed=7)
    check.sampling_filters(spy, nucleus, seed=7)
    assert seen[4:6] == seen[6:8] and result.seed == 7


# --- the pre-LN block -----------------------------------------------------------------------------------------------

def block(x, ln_1, attn, ln_2, feed_forward, *, mistake=None):
    """A student's pre-LN block, with switches that reproduce the known mistakes."""
    causal = mistake != "no mask"
    if mistake == "post-LN":
        x = ln_1(x + attn(x, is_causal=True)[0])
        return ln_2(x + feed_forward(x))
    if mistake == "normalised stream":
        x = ln_1(x)
        x = x + attn(x, is_causal=True)[0]
        x = ln_2(x)
        return x + feed_forward(x)
    if mistake == "parallel":
        return x + attn(ln_1(x), is_causal=True)[0] + feed_forward(ln_2(x))
    h = x + attn(ln_1(x), is_causal=causal)[0]
    if mistake == "no first residual":
        h = attn(ln_1(x), is_causal=True)[0]
    second = ln_1 if mistake == "ln_1 twice" else ln_2
    out = feed_forward(second(h))
    return out if mistake == "no second residual" else h + out


def stack(x, blocks, ln_f, *, mistake=None, final=True):
    """A student's pre-LN stack from the blocks' parts, with switches for the known mistakes."""
    for each in blocks:
        x = block(x, each.ln_1, each.attn, each.ln_2, each.feed_forward, mistake=mistake)
        if final == "every block":
            x = ln_f(x)
    return ln_f(x) if final is True else x


def init(blocks, std=0.02, *, factor=None, multiply=False, only_attention=False, query_too=False, same=False):
    """A student's scaled init (nanoGPT's), with switches for the known mistakes."""
    scaled = std / math.sqrt(2 * len(blocks)) if factor is None else factor(std, len(blocks))
    with torch.no_grad():
        first = None
        for each in blocks:
            linears = [each.attn.output] + ([] if only_attention else [each.feed_forward.project])
            linears += [each.attn.query] if query_too else []
            for linear in linears:
                if multiply:
                    linear.weight.mul_(scaled / std)
                elif same and first is not None and linear is each.attn.output:
                    linear.weight.copy_(first)
                else:
                    linear.weight.normal_(0.0, scaled)
            first = each.attn.output.weight.clone() if first is None else first


def test_pre_ln_stack_reference_passes():
    expect(check.pre_ln_stack(stack, init), Outcome.PASSED, "equal to course_lib's GPT-2 stack")

    def with_explicit_mask(x, blocks, ln_f):
        for each in blocks:
            h = x + each.attn(each.ln_1(x), None, True)[0]
            x = h + each.feed_forward(each.ln_2(h))
        return ln_f(x)

    def init_returning(blocks, std):
        init(blocks, std)
        return blocks

    expect(check.pre_ln_stack(with_explicit_mask, init_returning, seed=3), Outcome.PASSED)


@pytest.mark.parametrize("mistake, message, hint", [
    ("post-LN", "'post-LN'", "GPT-1's post-LN block"),
    ("normalised stream", "'LayerNorm on the residual stream'", "the residual path carries x"),
    ("no mask", "'no causal mask'", "is_causal=True"),
    ("ln_1 twice", "'ln_1 used twice'", "ln_2"),
    ("parallel", "'feed-forward reads the block input'", "first residual sum"),
    ("no first residual", "'no residual around attention'", "residual"),
    ("no second residual", "'no residual around the feed-forward'", "residual"),
])
def test_pre_ln_stack_block_mistakes_are_named(mistake, message, hint):
    student = lambda x, blocks, ln_f: stack(x, blocks, ln_f, mistake=mistake)  # noqa: E731
    expect(check.pre_ln_stack(student, init), Outcome.FAILED, message, hint)


def test_pre_ln_stack_mistakes_are_named():
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: stack(x, blocks, ln_f, final=False), init), Outcome.FAILED,
           "'no final LayerNorm'", "ln_f(x)")
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: stack(x, blocks, ln_f, final="every block"), init),
           Outcome.FAILED, "'final LayerNorm after every block'", "LAST block")
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: stack(x, blocks[-1:], ln_f), init), Outcome.FAILED,
           "'only the last block'", "every block")
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: stack(x, blocks[:1], ln_f), init), Outcome.FAILED,
           "'only the first block'", "every block")
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: [b(x) for b in blocks], init), Outcome.ERROR,
           "not callable", "its parts only")


@pytest.mark.parametrize("student, message, hint", [
    (functools.partial(init, factor=lambda std, n: std), "'no scaling'", "sqrt(N)"),
    (functools.partial(init, factor=lambda std, n: std / math.sqrt(n)), "'1/sqrt(L)'", "N = 2 L"),
    (functools.partial(init, factor=lambda std, n: std / (2 * n)), "'1/N'", "square root"),
    (functools.partial(init, factor=lambda std, n: 0.02 / math.sqrt(2 * n)), "expected std", "mean 0"),  # hard-coded
    (functools.partial(init, multiply=True), "multiplied by the factor", "normal_"),
    (functools.partial(init, only_attention=True), "feed_forward.project.weight` is unchanged", "every block"),
    (functools.partial(init, query_too=True), "changed `0.attn.query.weight`", "only the two residual"),
    (functools.partial(init, same=True), "very same", "separately"),
    (lambda blocks, std: [b.attn.output.weight.detach().normal_(0, std) for b in blocks], "returned a list",
     "in place"),
])
def test_scaled_init_mistakes_are_named(student, message, hint):
    expect(check.pre_ln_stack(stack, student, seed=1), Outcome.FAILED, message, hint)


def test_pre_ln_stack_refuses_changed_weights_and_inputs_wrong_kinds_and_survives_bad_code():
    def changes_weights(x, blocks, ln_f):
        with torch.no_grad():
            blocks[0].ln_2.weight.mul_(2)
        return stack(x, blocks, ln_f)

    def changes_x(x, blocks, ln_f):
        out = stack(x, blocks, ln_f)
        x.zero_()
        return out

    def drops_a_block(x, blocks, ln_f):
        out = stack(x, blocks, ln_f)
        blocks.pop()
        return out

    expect(check.pre_ln_stack(changes_weights, init), Outcome.FAILED, "changed the weights of `blocks[0].ln_2`")
    expect(check.pre_ln_stack(changes_x, init), Outcome.FAILED, "changed its input `x`")
    assert check.pre_ln_stack(drops_a_block, init).outcome is Outcome.FAILED
    expect(check.pre_ln_stack(lambda x, blocks, ln_f: x + blocks[0].attn(blocks[0].ln_1(x), is_causal=True), init),
           Outcome.ERROR, "your code raised", "first item")
    expect(check.pre_ln_stack(lambda *args: stack(*args).tolist(), init), Outcome.FAILED, "should be a torch.Tensor")
    expect(check.pre_ln_stack(lambda *args: stack(*args)[0], init), Outcome.FAILED, "of x's shape")
    expect(check.pre_ln_stack(lambda *args: (stack(*args), None), init), Outcome.FAILED, "should be a torch.Tensor")
    expect(check.pre_ln_stack(stack, lambda blocks, std: None), Outcome.FAILED, "is unchanged")
    expect(check.pre_ln_stack(stack, lambda blocks: init(blocks)), Outcome.FAILED, "signature")

    def stub(*args):
        raise NotImplementedError

    expect(check.pre_ln_stack(stub, stub), Outcome.NOT_ATTEMPTED)
    expect(check.pre_ln_stack(stack, stub), Outcome.NOT_ATTEMPTED)

    def hard_coded(x, blocks, ln_f):  # written for 8-wide vectors
        return stack(x.view(-1, 8), blocks, ln_f)

    assert check.pre_ln_stack(hard_coded, init, seed=0).outcome in (Outcome.ERROR, Outcome.FAILED)

    def hangs(blocks, std):
        while True:
            pass

    assert check.pre_ln_stack(stack, hangs, seed=0, time_limit=2).outcome is not Outcome.PASSED


def test_pre_ln_stack_draws_fresh_shapes():
    shapes = []

    def spy(x, blocks, ln_f):
        shapes.append((tuple(x.shape), len(blocks)))
        return stack(x, blocks, ln_f)

    for seed in range(6):
        check.pre_ln_stack(spy, init, seed=seed)
    assert len(set(shapes)) > 3


# --- LM fine-tuning within a token budget (the tiny task: a 1-layer random GPT, about a second per run) -------------

TINY = dict(task="tiny-sms-lm", max_loss=7.6, max_epochs=3)  # the reference reaches about 7.36 from 9.02


def train_lm(model, batches, epochs=3, lr=1e-2):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in batches:
            logits = model(batch["input_ids"]).logits
            loss = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def test_lm_reference_passes_within_the_budget_and_on_another_draw():
    expect(check.lm_fine_tuning(train_lm, **TINY), Outcome.PASSED, "3.00 epochs of 4,096 tokens (budget 3)")
    expect(check.lm_fine_tuning(train_lm, **TINY, seed=1), Outcome.PASSED)


def test_lm_over_the_budget_and_untrained_fail():
    result = check.lm_fine_tuning(lambda m, b: train_lm(m, b, epochs=4), **TINY)
    expect(result, Outcome.FAILED, "over the budget: the model read 16,384 training tokens", "fewer epochs")
    expect(check.lm_fine_tuning(lambda model, batches: model, **TINY), Outcome.FAILED, "above the threshold",
           "saw no training token")
    expect(check.lm_fine_tuning(lambda m, b: train_lm(copy.deepcopy(m), b, epochs=4), **TINY), Outcome.FAILED,
           "over the budget")


def test_lm_evaluation_without_gradients_is_free():
    def with_validation(model, batches):
        train_lm(model, batches)
        valid = message_stream(load_spam("valid").texts, get_lm_task("tiny-sms-lm").tokenizer)[:1024]
        model.eval()
        with torch.no_grad():
            model(valid.view(16, 64))
        return model

    expect(check.lm_fine_tuning(with_validation, **TINY), Outcome.PASSED)


def test_lm_training_on_the_held_out_messages_is_detected():
    def leaks(model, batches):
        heldout = message_stream(load_spam("test").texts, get_lm_task("tiny-sms-lm").tokenizer)[:2048]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(2):
            loss = model(heldout.view(32, 64), labels=heldout.view(32, 64)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    expect(check.lm_fine_tuning(leaks, **TINY), Outcome.FAILED, "trained on held-out text", "`batches` you are given")


@pytest.mark.parametrize("student, message", [
    (lambda model, batches: None, "returned None"),
    (lambda model, batches: model.state_dict(), "should return the trained model (an nn.Module), got collections.OrderedDict"),
    (lambda model, batches: get_lm_task("tiny-sms-lm").new_model(), "a model the check did not hand it"),
    (lambda model, batches: "done", "got str"),
], ids=["none", "state-dict", "new-model", "text"])
def test_lm_answers_that_are_not_the_trained_model(student, message):
    expect(check.lm_fine_tuning(student, **TINY), Outcome.FAILED, message)


def test_lm_new_layers_diverged_weights_and_bad_code():
    def adds_a_layer(model, batches):
        model.extra = nn.Linear(2, 2)
        return train_lm(model, batches)

    def diverged(model, batches):
        train_lm(model, batches, epochs=1)
        with torch.no_grad():
            model.transformer.ln_f.weight.fill_(float("nan"))
        return model

    def crashes(model, batches):
        return model(torch.zeros(3))

    expect(check.lm_fine_tuning(adds_a_layer, **TINY), Outcome.FAILED, "layers differ")
    expect(check.lm_fine_tuning(diverged, **TINY), Outcome.FAILED, "not finite", "lower the learning rate")
    expect(check.lm_fine_tuning(crashes, **TINY), Outcome.ERROR, "your code raised")

    def stub(model, batches):
        raise NotImplementedError

    expect(check.lm_fine_tuning(stub, **TINY), Outcome.NOT_ATTEMPTED)


def test_lm_usage_errors_and_endless_loop():
    from course_lib.grading import CheckUsageError

    with pytest.raises(CheckUsageError, match="no LM fine-tuning task"):
        check.lm_fine_tuning(train_lm, task="nope", max_loss=1.0, max_epochs=1)
    with pytest.raises(CheckUsageError, match="max_loss"):
        check.lm_fine_tuning(train_lm, task="tiny-sms-lm", max_loss="low", max_epochs=1)

    def endless(model, batches):
        while True:
            pass

    expect(check.lm_fine_tuning(endless, **TINY, time_limit=2), Outcome.TIMED_OUT)
