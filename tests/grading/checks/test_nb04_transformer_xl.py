"""Notebook 04's checks: the relative shift, the memory update and evaluation with memory pass their references and
equivalent answers, name each known mistake with its hint, draw fresh inputs at every call, and refuse mutation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

import course_lib.grading.checks.nb04_transformer_xl  # noqa: F401  (registers relative_shift, memory_update, xl_evaluation)
from course_lib.blocks.relative_attention import relative_shift as library_shift
from course_lib.grading import Outcome, check

# --- the relative shift ---------------------------------------------------------------------------------------------

def gather_shift(scores, offset=0, reverse=False):
    """A student's explicit gather, with switches for the known mistakes."""
    query_len, key_len = scores.shape[-2:]
    i, j = torch.arange(query_len)[:, None], torch.arange(key_len)[None, :]
    move = i if reverse else query_len - 1 - i
    return scores.gather(-1, (j + move + offset).clamp(0, key_len - 1).expand_as(scores))


def authors_shift(scores):
    """The authors' trick: pad a zero column on the left, re-read the buffer with rows one longer, drop a row."""
    batch, heads, query_len, key_len = scores.shape
    padded = torch.cat([scores.new_zeros(batch, heads, query_len, 1), scores], dim=-1)
    return padded.view(batch, heads, key_len + 1, query_len)[:, :, 1:].reshape(batch, heads, query_len, key_len)


def test_shift_reference_and_equivalent_answers_pass():
    for answer in (library_shift, gather_shift, authors_shift):
        expect(check.relative_shift(answer), Outcome.PASSED, "true distance")


@pytest.mark.parametrize("answer, message, hint", [
    (lambda s: s.clone(), "'no shift at all'", "move left by qlen-1-i"),
    (lambda s: gather_shift(s, offset=1), "'off by one: one column too far'", "not qlen-i"),
    (lambda s: gather_shift(s, offset=-1), "'off by one: one column short'", "not qlen-2-i"),
    (lambda s: gather_shift(s, reverse=True), "'rows moved the wrong way'", "LAST query"),
])
def test_shift_known_mistakes_are_named(answer, message, hint):
    expect(check.relative_shift(answer), Outcome.FAILED, message, hint)


def test_shift_hard_coded_sizes_and_wrong_kinds():
    def hard_coded(scores):  # the authors' trick, written for one example: batch 2, 4 heads, qlen 4, klen 6
        padded = torch.cat([scores.new_zeros(2, 4, 4, 1), scores], dim=-1)
        return padded.view(2, 4, 7, 4)[:, :, 1:].reshape(2, 4, 4, 6)

    for seed in range(3):  # sizes drawn anew: never 2 x 4 x 4 x 6 with these seeds
        expect(check.relative_shift(hard_coded, seed=seed), Outcome.ERROR, hint="never type sizes")
    expect(check.relative_shift(lambda s: None), Outcome.FAILED, "is None")
    expect(check.relative_shift(lambda s: library_shift(s).tolist()), Outcome.FAILED, "should be a torch.Tensor")
    expect(check.relative_shift(lambda s: library_shift(s)[0]), Outcome.FAILED, "of shape")


def test_shift_refuses_mutated_input_and_draws_fresh_inputs():
    def in_place(scores):
        shifted = library_shift(scores).clone()
        scores.zero_()
        return shifted

    expect(check.relative_shift(in_place), Outcome.FAILED, "changed its input `scores`", "build new")
    seen = []

    def spy(scores):
        seen.append(tuple(scores.shape))
        return library_shift(scores)

    check.relative_shift(spy)
    check.relative_shift(spy)
    assert seen[:3] != seen[3:6]
    check.relative_shift(spy, seed=7)
    check.relative_shift(spy, seed=7)
    assert seen[6:9] == seen[9:12]


def test_shift_not_attempted():
    def stub(scores):
        raise NotImplementedError

    expect(check.relative_shift(stub), Outcome.NOT_ATTEMPTED)


# --- the memory update ----------------------------------------------------------------------------------------------

def update(hidden_states, mems, mem_len, *, detach=True, keep="last", concatenate=True, order="memory first"):
    """A student's memory update, with switches for the known mistakes."""
    new = []
    for index, hidden in enumerate(hidden_states):
        if mems is None or not concatenate:
            extended = hidden
        else:
            pieces = [mems[index], hidden] if order == "memory first" else [hidden, mems[index]]
            extended = torch.cat(pieces, dim=1)
        kept = extended[:, -mem_len:] if keep == "last" else extended[:, :mem_len]
        new.append(kept.detach() if detach else kept)
    return new


def test_memory_reference_and_equivalent_answers_pass():
    expect(check.memory_update(update), Outcome.PASSED, "cut from the graph")

    def under_no_grad(hidden_states, mems, mem_len):
        with torch.no_grad():
            return update(hidden_states, mems, mem_len, detach=False)

    expect(check.memory_update(under_no_grad), Outcome.PASSED)
    expect(check.memory_update(lambda h, m, n: tuple(update(h, m, n))), Outcome.PASSED)


@pytest.mark.parametrize("options, message, hint", [
    (dict(detach=False), "forgot the stop-gradient", ".detach()"),
    (dict(keep="first"), "'first mem_len kept'", "LAST mem_len"),
    (dict(concatenate=False), "'new states only'", "torch.cat([mems[i], hidden_states[i]], dim=1)"),
    (dict(order="segment first"), "'segment before the memory'", "in time order"),
])
def test_memory_known_mistakes_are_named(options, message, hint):
    expect(check.memory_update(lambda h, m, n: update(h, m, n, **options)), Outcome.FAILED, message, hint)


def test_memory_first_segment_none_hard_coded_sizes_and_wrong_kinds():
    def forgets_none(hidden_states, mems, mem_len):
        return [torch.cat([mems[i], h], 1)[:, -mem_len:].detach() for i, h in enumerate(hidden_states)]

    expect(check.memory_update(forgets_none), Outcome.ERROR, "NoneType", "mems` is None")

    def hard_coded(hidden_states, mems, mem_len):
        return update(hidden_states, mems, 4)  # the notebook's mem_len

    expect(check.memory_update(hard_coded), Outcome.FAILED)
    expect(check.memory_update(lambda h, m, n: torch.stack(update(h, m, n))), Outcome.FAILED, "one tensor")
    expect(check.memory_update(lambda h, m, n: update(h, m, n)[:-1]), Outcome.FAILED, "memories (one per")
    expect(check.memory_update(lambda h, m, n: None), Outcome.FAILED, "is None")


def test_memory_refuses_mutated_inputs():
    def writes_into_mems(hidden_states, mems, mem_len):
        new = update(hidden_states, mems, mem_len)
        if mems is not None:
            mems[0] = new[0]  # replaces the caller's memory
        return new

    expect(check.memory_update(writes_into_mems), Outcome.FAILED, "changed its input `mems`")

    def detaches_in_place(hidden_states, mems, mem_len):
        new = update(hidden_states, mems, mem_len)
        for hidden in hidden_states:
            hidden.detach_()
        return new

    expect(check.memory_update(detaches_in_place), Outcome.FAILED, "in place", "`.detach()` returns a new")


# --- evaluation with memory -----------------------------------------------------------------------------------------

def evaluate(model, ids, segment_len, *, memory=True, eval_mode=True, shift=1, perplexity=False, mean=False,
             drop_last=False, fixed_len=None):
    """A student's evaluation, with switches for the known mistakes."""
    segment_len = fixed_len or segment_len
    if eval_mode:
        model.eval()
    inputs, targets = (ids[:-1], ids[1:]) if shift else (ids, ids)
    losses, mems = [], None
    with torch.no_grad():
        for start in range(0, len(inputs), segment_len):
            if drop_last and start + segment_len > len(inputs):
                break
            output = model(inputs[None, start:start + segment_len], mems=mems if memory else None)
            mems = output.mems
            losses.append(F.cross_entropy(output.logits[0], targets[start:start + segment_len], reduction="none"))
    losses = torch.cat(losses)
    if mean:
        return float(losses.mean())
    return losses.exp() if perplexity else losses


def test_evaluation_reference_passes_with_gradients_on_too():
    expect(check.xl_evaluation(evaluate), Outcome.PASSED, "equal course_lib's evaluation with memory")

    def with_grad(model, ids, segment_len):
        model.eval()
        losses, mems = [], None
        for start in range(0, len(ids) - 1, segment_len):
            end = min(start + segment_len, len(ids) - 1)
            output = model(ids[None, start:end], mems=mems, labels=ids[None, start + 1:end + 1])
            mems = output.mems
            losses.append(F.cross_entropy(output.logits[0], ids[start + 1:end + 1], reduction="none"))
        return torch.cat(losses)

    expect(check.xl_evaluation(with_grad), Outcome.PASSED)


@pytest.mark.parametrize("options, outcome, message, hint", [
    (dict(memory=False), Outcome.FAILED, "WITHOUT memory", "output.mems"),
    (dict(eval_mode=False), Outcome.FAILED, "training mode", "model.eval()"),
    (dict(shift=0), Outcome.FAILED, "shape", "the last id is only a label"),
    (dict(perplexity=True), Outcome.FAILED, "perplexities", "in nats"),
    (dict(mean=True), Outcome.FAILED, "single number", "reduction='none'"),
    (dict(drop_last=True), Outcome.FAILED, "shape", "the last segment is shorter"),
    (dict(fixed_len=64), Outcome.FAILED, "the model's config.segment_len", "segment_len argument"),
])
def test_evaluation_known_mistakes_are_named(options, outcome, message, hint):
    expect(check.xl_evaluation(lambda m, i, s: evaluate(m, i, s, **options)), outcome, message, hint)


def test_evaluation_shortcut_is_switched_off_and_inputs_are_protected():
    def shortcut(model, ids, segment_len):
        model.eval()
        return model.forward_in_segments(ids[None, :-1], labels=ids[None, 1:], segment_len=segment_len)

    expect(check.xl_evaluation(shortcut), Outcome.ERROR, "switched off", "output.mems")

    def mutates(model, ids, segment_len):
        losses = evaluate(model, ids, segment_len)
        ids[0] = 0
        return losses

    expect(check.xl_evaluation(mutates), Outcome.FAILED, "changed its input `ids`")


def _losses_from_logits(logits, ids):
    return F.cross_entropy(logits[0], ids[1:], reduction="none")


def _through_the_parent_class(model, ids, segment_len):
    model.eval()
    with torch.no_grad():
        logits = type(model).__mro__[1].forward_in_segments(model, ids[None, :-1], segment_len=segment_len).logits
    return _losses_from_logits(logits, ids)


def _through_the_class(model, ids, segment_len):
    from course_lib.models.transformer_xl import TransformerXLLMHeadModel

    model.eval()
    with torch.no_grad():
        logits = TransformerXLLMHeadModel.forward_in_segments(model, ids[None, :-1], segment_len=segment_len).logits
    return _losses_from_logits(logits, ids)


def _on_a_plain_copy(model, ids, segment_len):
    from course_lib.models.transformer_xl import TransformerXLLMHeadModel

    copy = TransformerXLLMHeadModel(model.config)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        logits = copy.eval().forward_in_segments(ids[None, :-1], segment_len=segment_len).logits
    return _losses_from_logits(logits, ids)


def _the_checks_reference(model, ids, segment_len):
    from course_lib.grading.checks.nb04_xl_evaluation import _reference_losses

    return _reference_losses(model.eval(), ids, segment_len)


def _hides_from_the_check(model, ids, segment_len):
    torch.nn.modules.module._global_forward_pre_hooks.clear()
    return _on_a_plain_copy(model, ids, segment_len)


@pytest.mark.parametrize("shortcut, named", [
    (_through_the_parent_class, "`TransformerXLLMHeadModel.forward_in_segments`"),
    (_through_the_class, "`TransformerXLLMHeadModel.forward_in_segments`"),
    (_on_a_plain_copy, "`TransformerXLLMHeadModel.forward_in_segments`"),
    (_the_checks_reference, "the check's own `_reference_losses`"),
    (_hides_from_the_check, "code that removed the check's hook"),
])
def test_evaluation_calls_into_the_library_loop_fail_naming_it(shortcut, named):
    expect(check.xl_evaluation(shortcut), Outcome.FAILED, f"your function called {named}", "mems = output.mems")


def test_evaluation_a_hand_written_loop_through_the_body_and_head_passes():
    def by_parts(model, ids, segment_len):  # the layers by hand: a loop of the student's own
        model.eval()
        losses, mems = [], None
        with torch.no_grad():
            for start in range(0, len(ids) - 1, segment_len):
                out = model.transformer(ids[None, start:min(start + segment_len, len(ids) - 1)], mems=mems)
                mems = out.mems
                logits = model.lm_head(out.hidden_states[-1])
                losses.append(F.cross_entropy(logits[0], ids[start + 1:start + 1 + logits.shape[1]], reduction="none"))
        return torch.cat(losses)

    expect(check.xl_evaluation(by_parts), Outcome.PASSED, "equal course_lib's evaluation with memory")


def test_evaluation_draws_fresh_held_out_text():
    seen = []

    def spy(model, ids, segment_len):
        seen.append((len(ids), segment_len, int(ids.sum())))
        return evaluate(model, ids, segment_len)

    check.xl_evaluation(spy)
    check.xl_evaluation(spy)
    check.xl_evaluation(spy, seed=3)
    check.xl_evaluation(spy, seed=3)
    assert seen[0] != seen[1] and seen[2] == seen[3]
