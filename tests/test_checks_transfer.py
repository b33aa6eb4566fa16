"""Notebook 00's checks pass the reference solutions and name each known mistake."""

from __future__ import annotations

import math

import pytest

from course_lib.grading import Outcome, check
from course_lib.transfer import discriminative_param_groups, slanted_triangular_lr


@pytest.fixture(autouse=True)
def feedback_mode(monkeypatch):
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    check.reset()


def expect(result, outcome, message=None, hint=None):
    assert result.outcome is outcome, str(result)
    if message is not None:
        assert message in str(result), str(result)
    if hint is not None:
        assert result.hint is not None and hint in result.hint, str(result)


# --- discriminative learning rates -----------------------------------------------------------------------------

def groups_with(rates):
    """A student answer that gives layer group i the learning rate rates(i, n, lr, decay)."""
    def fn(groups, lr, decay=2.6):
        return [{"params": g.params, "lr": rates(i, len(groups), lr, decay)} for i, g in enumerate(groups)]
    return fn


def test_discriminative_reference_passes():
    expect(check.discriminative_lr_groups(discriminative_param_groups), Outcome.PASSED)


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
    expect(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: None), Outcome.FAILED, "list of dicts")


def test_discriminative_not_attempted():
    def stub(groups, lr, decay=2.6):
        raise NotImplementedError()
    expect(check.discriminative_lr_groups(stub), Outcome.NOT_ATTEMPTED)


# --- slanted triangular learning rate ---------------------------------------------------------------------------

def test_stlr_reference_passes():
    expect(check.slanted_triangular_lr(slanted_triangular_lr), Outcome.PASSED)


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
    expect(check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: [0.1]), Outcome.FAILED, "expected a number")
