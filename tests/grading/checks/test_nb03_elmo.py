"""Notebook 03's checks: the scalar mix and reversing a padded batch pass their references, name each known mistake,
draw fresh inputs at every call, catch hard-coded sizes, refuse answers of the wrong kind and changed inputs, and
survive bad code; the ELMo spam task is graded by the fine-tuning check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

import course_lib.grading.checks.nb03_elmo  # noqa: F401  (registers scalar_mix and reverse_padded)
from course_lib.blocks.lstm_lm import reverse_padded as library_reverse
from course_lib.blocks.scalar_mix import ScalarMix, masked_layer_norm
from course_lib.grading import Outcome, check

# --- scalar mix -----------------------------------------------------------------------------------------------------

def mix(layers, weights, gamma, mask=None, do_layer_norm=False, *, softmax=True, use_gamma=True, norm="masked"):
    """A student's answer, with switches that reproduce the known mistakes."""
    s = weights.softmax(0) if softmax else weights
    if do_layer_norm:
        real = mask if mask is not None else torch.ones(layers.shape[1:3], dtype=torch.bool)
        if norm == "masked":
            layers = torch.stack([masked_layer_norm(h, real) for h in layers])
        elif norm == "unmasked":
            layers = torch.stack([(h - h.mean()) / torch.sqrt(h.var(unbiased=False) + 1e-13) for h in layers])
        elif norm == "per_vector":
            layers = F.layer_norm(layers, layers.shape[-1:])
    out = sum(s[j] * layers[j] for j in range(len(layers)))
    return gamma * out if use_gamma else out


def test_mix_reference_and_course_lib_scalar_mix_pass():
    expect(check.scalar_mix(mix), Outcome.PASSED, "masked layer norm")

    def with_module(layers, weights, gamma, mask=None, do_layer_norm=False):  # course_lib's ScalarMix itself
        module = ScalarMix(len(layers), do_layer_norm=do_layer_norm, initial_weights=weights.tolist())
        with torch.no_grad():
            module.gamma.copy_(gamma)
        return module(list(layers), mask)

    expect(check.scalar_mix(with_module), Outcome.PASSED)

    def garbage_on_padding(layers, weights, gamma, mask=None, do_layer_norm=False):  # padding is not graded
        out = mix(layers, weights, gamma, mask, do_layer_norm)
        return out if mask is None else out.masked_fill(~mask[:, :, None], float("nan"))

    expect(check.scalar_mix(garbage_on_padding), Outcome.PASSED)


@pytest.mark.parametrize("mistake, message, hint", [
    (dict(softmax=False), "'weights not put through a softmax'", "softmax(dim=0)"),
    (dict(use_gamma=False), "'gamma forgotten'", "multiply the weighted sum by gamma"),
    (dict(softmax=False, use_gamma=False), "'neither softmax nor gamma'", "gamma"),
    (dict(norm="unmasked"), "(2 layers, padding, layer norm)", "REAL positions only"),
    (dict(norm="per_vector"), "'each vector normalised on its own'", "one mean and one variance"),
    (dict(norm="none"), "'layer norm skipped'", "normalise every layer"),
])
def test_mix_known_mistakes(mistake, message, hint):
    wrong = lambda l, w, g, mask=None, do_layer_norm=False: mix(l, w, g, mask, do_layer_norm, **mistake)  # noqa
    result = check.scalar_mix(wrong, seed=5)
    if "padding" in message:  # the drawn number of layers is in the label; the mistake's name always is
        expect(result, Outcome.FAILED, "'padding not masked in the layer norm'", hint)
    else:
        expect(result, Outcome.FAILED, message, hint)


def test_mix_hard_coded_sizes_fail():
    def three_layers(layers, weights, gamma, mask=None, do_layer_norm=False):  # works for ELMo's 3 layers only
        s = weights.softmax(0)
        if do_layer_norm:
            layers = torch.stack([masked_layer_norm(h, mask) for h in layers])
        return gamma * (s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2])

    result = check.scalar_mix(three_layers)
    assert result.outcome in (Outcome.FAILED, Outcome.ERROR), str(result)

    def fixed_mask_shape(layers, weights, gamma, mask=None, do_layer_norm=False):
        mask = torch.ones(2, 4, dtype=torch.bool) if mask is None else mask[:2, :4]
        return mix(layers[:, :2, :4], weights, gamma, mask, do_layer_norm)

    for seed in range(4):
        result = check.scalar_mix(fixed_mask_shape, seed=seed)
        assert result.outcome in (Outcome.FAILED, Outcome.ERROR), str(result)


def test_mix_wrong_kinds_shapes_and_mutation():
    expect(check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: None), Outcome.FAILED, "is None")
    expect(check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: mix(l, w, g, mask, do_layer_norm)
                            .tolist()), Outcome.FAILED, "should be a torch.Tensor")
    expect(check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: l * g), Outcome.FAILED,
           "shape", "sum over the layer axis")
    expect(check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: mix(l, w, g, mask, do_layer_norm)
                            .double()), Outcome.FAILED, "torch.float32")

    def in_place(layers, weights, gamma, mask=None, do_layer_norm=False):
        weights.copy_(weights.softmax(0))  # writes s into the caller's w
        return gamma * (weights[:, None, None, None] * (torch.stack([masked_layer_norm(h, mask) for h in layers])
                                                        if do_layer_norm else layers)).sum(0)

    expect(check.scalar_mix(in_place), Outcome.FAILED, "changed its input `weights`", "clone()")

    class Sneaky(torch.Tensor):
        pass

    expect(check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: mix(l, w, g, mask, do_layer_norm)
                            .as_subclass(Sneaky)), Outcome.FAILED, "subclass")


def test_mix_fresh_inputs_seed_repeats_stub_and_crash():
    seen = []

    def spy(layers, weights, gamma, mask=None, do_layer_norm=False):
        seen.append((tuple(layers.shape), float(weights.sum())))
        return mix(layers, weights, gamma, mask, do_layer_norm)

    check.scalar_mix(spy)
    check.scalar_mix(spy)
    assert seen[:3] != seen[3:6]
    result = check.scalar_mix(spy, seed=11)
    check.scalar_mix(spy, seed=11)
    assert seen[6:9] == seen[9:12] and result.seed == 11
    assert {shape[0] for shape, _ in seen} >= {3}  # ELMo's 3 layers, and others
    assert len({shape[0] for shape, _ in seen}) >= 2

    def stub(layers, weights, gamma, mask=None, do_layer_norm=False):
        raise NotImplementedError

    expect(check.scalar_mix(stub), Outcome.NOT_ATTEMPTED)
    result = check.scalar_mix(lambda l, w, g, mask=None, do_layer_norm=False: w @ l)
    expect(result, Outcome.ERROR, "your code raised RuntimeError", "softmax(0)[:, None, None, None]")
    expect(check.scalar_mix(lambda layers: layers), Outcome.FAILED, "signature")
    expect(check.scalar_mix("mix"), Outcome.FAILED, "expected a function")


def test_mix_endless_loop_is_stopped():
    def endless(layers, weights, gamma, mask=None, do_layer_norm=False):
        while True:
            pass

    expect(check.scalar_mix(endless, time_limit=1), Outcome.TIMED_OUT, "took longer than 1 s")


# --- reversing a right-padded batch ---------------------------------------------------------------------------------

def reverse_loop(sequence, lengths):
    """A plain, correct student answer: one row at a time."""
    out = sequence.clone()
    for b, n in enumerate(lengths.tolist()):
        out[b, :n] = sequence[b, :n].flip(0)
    return out


def test_reverse_reference_and_loop_pass():
    expect(check.reverse_padded(library_reverse), Outcome.PASSED, "padding left in place")
    expect(check.reverse_padded(reverse_loop), Outcome.PASSED)


@pytest.mark.parametrize("wrong, message, hint", [
    (lambda s, n: s.flip(1), "'whole rows flipped, padding included'", "FRONT"),
    (lambda s, n: s.clone(), "'nothing reversed'", "lengths[b] - 1 - k"),
    (lambda s, n: s.flip(0), "'the batch axis flipped'", "dim=1"),
    (lambda s, n: library_reverse(s, n) * (torch.arange(s.size(1))[None, :] < n[:, None]).reshape(
        *n.shape, s.size(1), *([1] * (s.dim() - 2))).to(s.dtype), "'padding set to 0'", "exactly as they were"),
])
def test_reverse_known_mistakes(wrong, message, hint):
    expect(check.reverse_padded(wrong), Outcome.FAILED, message, hint)


def test_reverse_off_by_one_and_hard_coded_kinds():
    def off_by_one(sequence, lengths):  # reverses one step too few
        out = sequence.clone()
        for b, n in enumerate(lengths.tolist()):
            out[b, : n - 1] = sequence[b, : n - 1].flip(0)
        return out

    expect(check.reverse_padded(off_by_one), Outcome.FAILED, "wrong order", "positions 0 .. lengths[b] - 1")

    def ids_only(sequence, lengths):  # hard-codes [batch, tokens]
        positions = torch.arange(sequence.size(1))[None, :]
        index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
        return sequence.gather(1, index)

    expect(check.reverse_padded(ids_only), Outcome.ERROR, "your code raised", "expand it over the last axis")

    def fixed_length(sequence, lengths):  # assumes every row has the same length as the first
        return reverse_loop(sequence, torch.full_like(lengths, int(lengths[0])))

    for seed in range(3):
        assert check.reverse_padded(fixed_length, seed=seed).outcome is Outcome.FAILED


def test_reverse_wrong_kinds_mutation_and_bad_code():
    expect(check.reverse_padded(lambda s, n: library_reverse(s, n).tolist()), Outcome.FAILED,
           "should be a torch.Tensor")
    expect(check.reverse_padded(lambda s, n: None), Outcome.FAILED, "is None")
    expect(check.reverse_padded(lambda s, n: library_reverse(s, n).float()), Outcome.FAILED, "torch.int64")
    expect(check.reverse_padded(lambda s, n: library_reverse(s, n)[:, :-1]), Outcome.FAILED, "of shape")

    def in_place(sequence, lengths):
        result = library_reverse(sequence, lengths)
        sequence.copy_(result)
        return result

    expect(check.reverse_padded(in_place), Outcome.FAILED, "changed its input `sequence`")

    def lengths_popped(sequence, lengths):
        lengths -= 0  # harmless
        return library_reverse(sequence, lengths)

    expect(check.reverse_padded(lengths_popped), Outcome.PASSED)

    def stub(sequence, lengths):
        raise NotImplementedError

    expect(check.reverse_padded(stub), Outcome.NOT_ATTEMPTED)
    expect(check.reverse_padded(lambda s, n: s[n]), Outcome.ERROR, "your code raised")


def test_reverse_fresh_inputs_and_seed():
    seen = []

    def spy(sequence, lengths):
        seen.append((tuple(sequence.shape), lengths.tolist()))
        return library_reverse(sequence, lengths)

    check.reverse_padded(spy)
    check.reverse_padded(spy)
    assert seen[0:2] != seen[2:4]
    check.reverse_padded(spy, seed=7)
    check.reverse_padded(spy, seed=7)
    assert seen[4:6] == seen[6:8]
    assert all(1 in lengths and max(lengths) == shape[1] for shape, lengths in seen)  # a full row and a 1-token row


# --- the ELMo spam task of the final exercise -----------------------------------------------------------------------

def test_elmo_spam_task_is_graded_by_the_fine_tuning_check(monkeypatch):
    from course_lib.grading.fine_tuning.tasks import FINE_TUNING_TASKS, ElmoBody, SpamFineTuning

    assert FINE_TUNING_TASKS["elmo-spam-150"].labels == 150 and isinstance(FINE_TUNING_TASKS["elmo-spam-150"].body,
                                                                           ElmoBody)
    task = SpamFineTuning(labels=32, test_messages=64, body=ElmoBody())  # a small one, for this test only
    monkeypatch.setitem(FINE_TUNING_TASKS, "elmo-spam-test", task)
    first, second = task.new_model(seed=1), task.new_model(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    trainable = {name for name, p in first.named_parameters() if p.requires_grad}
    assert trainable == {"embedder.scalar_mix.layer_weights", "embedder.scalar_mix.gamma", "classifier.weight",
                         "classifier.bias"}

    def one_epoch(model, batches):
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
        for batch in batches:
            loss = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    expect(check.fine_tuning(one_epoch, task="elmo-spam-test", min_accuracy=0.0, min_f1=0.0, max_epochs=1),
           Outcome.PASSED, "1.00 epochs of 32 labels")
    twice = lambda model, batches: one_epoch(one_epoch(model, batches), batches)  # noqa: E731
    expect(check.fine_tuning(twice, task="elmo-spam-test", min_accuracy=0.0, min_f1=0.0, max_epochs=1),
           Outcome.FAILED, "over the budget")
