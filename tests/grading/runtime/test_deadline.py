"""The time limit really stops the student's code, covers the whole check, and leaves nothing running behind it."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest
import torch

from course_lib.grading import Outcome, TimeLimitExceeded, check, register, time_limit
from course_lib.grading.runtime.registry import unregister
from course_lib.grading.runtime.runner import call_student
from course_lib.transfer import slanted_triangular_lr

LIMIT = 0.5


@pytest.fixture(autouse=True)
def feedback_mode(monkeypatch):
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    check.reset()


def stlr_within(seconds: float) -> float:
    """Time one check of the reference schedule (its normal speed: a few milliseconds)."""
    start = time.perf_counter()
    assert check.slanted_triangular_lr(slanted_triangular_lr).passed
    return time.perf_counter() - start


# Wrong, clumsy and hostile schedules, each with the signature of the exercise.

def endless(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    while True:
        pass


def swallows_exception(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    while True:
        try:
            while True:
                pass
        except Exception:  # noqa: BLE001 - the student's catch-all
            pass


def swallows_base_exception(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    while True:
        try:
            while True:
                step += 1
        except BaseException:  # noqa: BLE001 - the student's catch-everything
            continue


def sleeps_and_swallows(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    while True:
        try:
            time.sleep(100)
        except BaseException:  # noqa: BLE001
            pass


def catches_and_returns(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    try:
        while True:
            pass
    except BaseException:  # noqa: BLE001 - caught the time-out and answers anyway, late
        return slanted_triangular_lr(step, total_steps, lr_max, cut_frac, ratio)


def loops_in_finally(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
    try:
        while True:
            pass
    finally:
        while True:
            pass


@pytest.mark.parametrize("fn", [endless, swallows_exception, swallows_base_exception, sleeps_and_swallows,
                                catches_and_returns, loops_in_finally])
def test_endless_student_code_is_stopped_at_the_limit_and_the_next_check_runs_at_full_speed(fn):
    normal = stlr_within(5)
    threads = threading.active_count()
    start = time.perf_counter()
    result = check.slanted_triangular_lr(fn, time_limit=LIMIT)
    took = time.perf_counter() - start
    assert result.outcome is Outcome.TIMED_OUT, str(result)
    assert result.message.startswith(f"took longer than {LIMIT:g} s"), result.message
    assert "endless loop" in result.hint
    assert took < LIMIT + 2.0  # stopped at the limit (plus at most a few repeats), not left running
    assert threading.active_count() == threads  # no thread left behind
    assert sys.gettrace() is None and signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert stlr_within(5) < max(10 * normal, 1.0)  # nothing burns the CPU in the background


def test_timed_out_shows_where_the_students_code_was_stopped():
    result = check.slanted_triangular_lr(endless, time_limit=LIMIT)
    assert result.outcome is Outcome.TIMED_OUT, str(result)
    assert result.student_line is not None and "in endless" in result.student_line, str(result)
    assert "Your code: test_deadline.py, line" in str(result), str(result)


def test_a_student_who_ignores_the_alarm_is_stopped_by_the_backstop():
    def ignores_alarm(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass

    start = time.perf_counter()
    result = check.slanted_triangular_lr(ignores_alarm, time_limit=LIMIT)
    assert result.outcome is Outcome.TIMED_OUT and time.perf_counter() - start < LIMIT + 4.0, str(result)
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # the handler from before the check is back
    assert stlr_within(5) < 1.0


def test_a_float_subclass_whose_float_loops_is_refused_before_it_is_called():
    class Forever(float):
        def __float__(self):
            while True:
                pass

    result = check.slanted_triangular_lr(lambda t, T, m, c=0.1, r=32: Forever(0.1), time_limit=LIMIT)
    assert result.outcome is Outcome.FAILED and "a subclass of float" in result.message, str(result)


def test_a_value_whose_methods_loop_is_stopped_inside_the_check():
    """The check's own work on the answer runs under the limit too (here a check that trusts `==`)."""
    class Forever:
        def __eq__(self, other):
            while True:
                pass

    @register("toy_trusting", title="Toy: trusts the answer")
    def toy_trusting(fn):
        return "equal" if call_student(fn) == 1 else "different"

    try:
        start = time.perf_counter()
        result = check.toy_trusting(Forever, time_limit=LIMIT)
    finally:
        unregister("toy_trusting")
    assert result.outcome is Outcome.TIMED_OUT and time.perf_counter() - start < LIMIT + 2.0


def test_a_tensor_subclass_whose_comparison_loops_is_refused():
    class Looping(torch.Tensor):
        def __eq__(self, other):
            while True:
                pass

    def answer(query, key, value, mask=None):
        weights = (query @ key.transpose(-2, -1)).softmax(-1)
        return (weights @ value).as_subclass(Looping), weights.as_subclass(Looping)

    result = check.scaled_dot_product_attention(answer, time_limit=LIMIT)
    assert result.outcome is Outcome.FAILED and "a subclass of torch.Tensor" in result.message, str(result)


def test_grad_mode_and_an_outer_alarm_survive_a_time_out():
    def stuck_without_grad(step, total_steps, lr_max, cut_frac=0.1, ratio=32):
        with torch.no_grad():
            while True:
                pass

    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    signal.setitimer(signal.ITIMER_REAL, 30.0)
    try:
        assert check.slanted_triangular_lr(stuck_without_grad, time_limit=LIMIT).outcome is Outcome.TIMED_OUT
        assert torch.is_grad_enabled()
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < remaining <= 30.0  # the caller's own timer was given back, minus the time spent
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_nested_limits_the_inner_one_expires_first_and_the_outer_one_still_holds():
    with time_limit(5) as outer:
        with pytest.raises(TimeLimitExceeded, match="took longer than 0.2 s"):
            with time_limit(0.2) as inner:
                while True:
                    pass
        assert inner.expired and not outer.expired
    with pytest.raises(TimeLimitExceeded, match="took longer than 0.2 s"):
        with time_limit(0.2):
            with time_limit(5):
                while True:
                    pass
    with pytest.raises(ValueError, match="positive"):
        time_limit(0)


def test_outside_the_main_thread_a_watchdog_stops_the_code_and_is_joined():
    results = []

    def grade_in_a_thread():
        for fn in (endless, swallows_exception):
            results.append(check.slanted_triangular_lr(fn, time_limit=LIMIT))
        results.append(check.slanted_triangular_lr(slanted_triangular_lr))

    worker = threading.Thread(target=grade_in_a_thread)
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    assert [r.outcome for r in results] == [Outcome.TIMED_OUT, Outcome.TIMED_OUT, Outcome.PASSED], results
    assert all(r.message.startswith(f"took longer than {LIMIT:g} s") for r in results[:2])
    assert not any(t.name == "course-check-watchdog" for t in threading.enumerate())
