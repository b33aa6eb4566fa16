"""Notebook 00's checks pass the reference solutions on drawn inputs and name each known mistake (issue 14 sec. 1)."""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

from course_lib.grading import Outcome, check
from course_lib.transfer import discriminative_param_groups, slanted_triangular_lr

# --- discriminative learning rates -----------------------------------------------------------------------------

def groups_with(rates):
    """A student answer that gives layer group i the learning rate rates(i, n, lr, decay)."""
    def fn(groups, lr, decay=2.6):
        return [{"params": g.params, "lr": rates(i, len(groups), lr, decay)} for i, g in enumerate(groups)]
    return fn


def test_discriminative_reference_passes():
    for seed in range(5):
        expect(check.discriminative_lr_groups(discriminative_param_groups, seed=seed), Outcome.PASSED)
    expect(check.discriminative_lr_groups(discriminative_param_groups), Outcome.PASSED)  # a fresh draw
    notebook = lambda groups, lr, decay=2.6: [  # noqa: E731 - notebook 00's solution
        {"params": group.params, "lr": lr / decay ** (len(groups) - 1 - i)} for i, group in enumerate(groups)]
    expect(check.discriminative_lr_groups(notebook), Outcome.PASSED)


@pytest.mark.parametrize("rates, message, hint", [
    (lambda i, n, lr, d: 1e-3 / 2.6 ** (n - 1 - i), "wrong learning rates", "rates for lr=1e-3 and decay=2.6"),
    (lambda i, n, lr, d: lr / 2.6 ** (n - 1 - i), "wrong learning rates", "use the `decay` argument"),
    (lambda i, n, lr, d: 1e-3 / d ** (n - 1 - i), "wrong learning rates", "use the `lr` argument"),
    (lambda i, n, lr, d: str(lr / d ** (n - 1 - i)), "should be a number, got str", "not text"),
    (lambda i, n, lr, d: f"{lr / d ** (n - 1 - i)}", "should be a number, got str", "not text"),
])
def test_discriminative_hard_coded_or_text_rates_fail(rates, message, hint):
    expect(check.discriminative_lr_groups(groups_with(rates)), Outcome.FAILED, message, hint)


def test_discriminative_changing_the_callers_groups_fails():
    def pops(groups, lr, decay=2.6):
        top = groups.pop()  # takes the head out of the caller's list
        return discriminative_param_groups(groups + [top], lr, decay)

    def empties(groups, lr, decay=2.6):
        answer = [{"params": list(g.params), "lr": lr / decay ** (len(groups) - 1 - i)} for i, g in enumerate(groups)]
        for group in groups:
            group.params.clear()
        return answer

    def scales_weights(groups, lr, decay=2.6):
        for group in groups:
            for p in group.params:
                p.data *= 0.5
        return discriminative_param_groups(groups, lr, decay)

    expect(check.discriminative_lr_groups(pops), Outcome.FAILED, "changed its input `groups`: `groups` had")
    expect(check.discriminative_lr_groups(empties), Outcome.FAILED, "`groups[0].params` had")
    expect(check.discriminative_lr_groups(scales_weights), Outcome.FAILED, "`groups[0].params[0]` changed at")


def test_discriminative_answers_of_the_wrong_kind():
    class Params(list):
        pass

    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: tuple(
        {"params": g.params, "lr": lr / decay ** (len(groups) - 1 - i)} for i, g in enumerate(groups))), Outcome.PASSED)
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: (
        {"params": g.params, "lr": lr} for g in groups)), Outcome.FAILED, "got generator")
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: [
        {"params": Params(g.params), "lr": lr} for g in groups]), Outcome.FAILED, "a subclass of list")
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: [
        {"params": g.params, "lr": torch.tensor(lr)} for g in groups]), Outcome.FAILED, "wrong learning rates")


@pytest.mark.parametrize("rates, hint", [
    (lambda i, n, lr, d: lr / d ** i, "order is reversed"),
    (lambda i, n, lr, d: lr / d ** (n - i), "off by one"),
    (lambda i, n, lr, d: lr * d ** (n - 1 - i), "do not multiply"),
    (lambda i, n, lr, d: lr, "same rate"),
    (lambda i, n, lr, d: lr / (d * (n - i)), "lr of group l-1"),
])
def test_discriminative_known_mistakes(rates, hint):
    expect(check.discriminative_lr_groups(groups_with(rates)), Outcome.FAILED, "wrong learning rates", hint)


def test_discriminative_structure_mistakes():
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: [{"params": g.params} for g in groups]),
           Outcome.FAILED, "lacks the key lr")
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: [{"params": [], "lr": lr}]), Outcome.FAILED,
           "one parameter group per layer group")
    shuffled = lambda groups, lr, decay=2.6: [{"params": g.params, "lr": lr} for g in reversed(groups)]  # noqa: E731
    expect(check.discriminative_lr_groups(shuffled), Outcome.FAILED, "does not hold exactly the parameters")
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: None), Outcome.FAILED, "is None", "`return`")
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: "groups"), Outcome.FAILED, "list of dicts")


def test_discriminative_groups_of_copies_are_named_and_generators_of_parameters_accepted():
    def detached(groups, lr, decay=2.6):
        return [{"params": [p.detach() for p in g.params], "lr": lr / decay ** (len(groups) - 1 - i)}
                for i, g in enumerate(groups)]

    def generators(groups, lr, decay=2.6):  # what `module.parameters()` gives; torch.optim accepts it
        return [{"params": (p for p in g.params), "lr": lr / decay ** (len(groups) - 1 - i)}
                for i, g in enumerate(groups)]

    expect(check.discriminative_lr_groups(detached), Outcome.FAILED, "the optimizer would update the copies",
           "no .detach()")
    expect(check.discriminative_lr_groups(generators), Outcome.PASSED)


def test_discriminative_not_attempted():
    def stub(groups, lr, decay=2.6):
        raise NotImplementedError()
    expect(check.discriminative_lr_groups(stub), Outcome.NOT_ATTEMPTED)


# --- slanted triangular learning rate ---------------------------------------------------------------------------

def test_stlr_reference_passes():
    for seed in range(5):
        expect(check.slanted_triangular_lr(slanted_triangular_lr, seed=seed), Outcome.PASSED)
    expect(check.slanted_triangular_lr(slanted_triangular_lr), Outcome.PASSED)


def test_stlr_a_table_of_answers_does_not_replay():
    table = {}
    record = lambda t, T, m, c=0.1, r=32: table.setdefault((t, T), slanted_triangular_lr(t, T, m, c, r))  # noqa
    expect(check.slanted_triangular_lr(record, seed=1), Outcome.PASSED)
    replay = lambda t, T, m, c=0.1, r=32: table.get((t, T), 0.5)  # noqa: E731 - answers recorded on other inputs
    expect(check.slanted_triangular_lr(replay, seed=2), Outcome.FAILED, "wrong rate at step")


@pytest.mark.parametrize("fn, hint", [
    (lambda t, T, m, c=0.1, r=32: slanted_triangular_lr(t, T, m, c, 32.0), "use the `ratio` argument"),
    (lambda t, T, m, c=0.1, r=32: slanted_triangular_lr(t, T, m, 0.1, r), "use the `cut_frac` argument"),
    (lambda t, T, m, c=0.1, r=32: slanted_triangular_lr(t, T, 0.01, c, r), "use the `lr_max` argument"),
])
def test_stlr_hard_coded_arguments(fn, hint):
    for seed in range(3):
        expect(check.slanted_triangular_lr(fn, seed=seed), Outcome.FAILED, "wrong rate at step", hint)


def paper(step, total, lr_max, cut_frac=0.1, ratio=32.0, *, zero_start=False, cut_fn=math.floor, decay_to=None):
    cut = cut_fn(total * cut_frac)
    p = step / cut if step < cut else 1 - (step - cut) / (cut * (1 / cut_frac - 1))
    if zero_start:
        return lr_max * p
    return lr_max * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("fn, hint", [
    (lambda t, T, m, c=0.1, r=32: paper(t, T, m, c, r, zero_start=True), "not 0"),
    (lambda t, T, m, c=0.1, r=32: paper(t, T, m, c, r, cut_fn=lambda x: math.floor(x) + 1), "rises linearly"),
    (lambda t, T, m, c=0.1, r=32: m * (1 + (min(t / (T * c), 1)) * (r - 1)) / r, "must come down"),
    (lambda t, T, m, c=0.1, r=32: paper(t, T, m, c, r) if t < T - 1 else 0.0, "decay ends"),
])
def test_stlr_known_mistakes(fn, hint):
    expect(check.slanted_triangular_lr(fn), Outcome.FAILED, "wrong rate at step", hint)


def test_stlr_paper_formula_passes_where_it_agrees():
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: paper(t, T, m, c, r)), Outcome.PASSED)


def test_stlr_wrong_type():
    class Rate(float):
        pass

    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: [0.1]), Outcome.FAILED, "should be a number, got list")
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: None), Outcome.FAILED, "is None", "`return`")
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: Rate(slanted_triangular_lr(t, T, m, c, r))),
           Outcome.FAILED, "a subclass of float")
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: float("nan")), Outcome.FAILED, "is nan")
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: torch.tensor(slanted_triangular_lr(t, T, m, c, r))),
           Outcome.PASSED)
