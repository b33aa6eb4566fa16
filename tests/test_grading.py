"""The grading machinery: results and their renders, the safe runner, tensor comparisons, modes and results file."""

from __future__ import annotations

import json
import linecache
import subprocess
import sys
import time
import traceback

import pytest
import torch

from course_lib.grading import CheckFailedError, CheckFailure, CheckResult, Outcome, check, register
from course_lib.grading.compare import assert_close, describe_difference, expect_tensor
from course_lib.grading.registry import _REGISTRY
from course_lib.grading.runner import NotAttempted, StudentError, TimedOut, call_student, student_frame, time_limit


@pytest.fixture(autouse=True)
def feedback_mode(monkeypatch):
    """Every test starts in feedback mode, without a results file and with an empty score."""
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    check.reset()
    yield
    check.reset()


@pytest.fixture
def toy_check():
    """A registered check that passes when the student's function doubles its input."""

    @register("toy_double", title="Toy: double")
    def toy_double(fn):
        x = torch.arange(4.0)
        assert_close(expect_tensor(call_student(fn, x), "result"), 2 * x, "result")
        return "doubles."

    yield check.toy_double
    del _REGISTRY["toy_double"]


# --- results and renders ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", list(Outcome))
def test_result_renders_text_and_html(outcome):
    result = CheckResult("x", "A <title>", outcome, "a message", details=["Expected 1", "Got 2"], hint="a hint",
                         student_line="line 3, in f: y = x")
    text, page = str(result), result._repr_html_()
    assert text == repr(result)
    assert text.startswith(f"[{outcome.value.replace('_', ' ').upper()}] A <title>: a message")
    assert "Expected 1" in text and "Hint: a hint" in text and "y = x" in text
    assert "A &lt;title&gt;" in page and "border-left" in page and "a hint" in page
    assert result.score == (1.0 if outcome is Outcome.PASSED else 0.0)


def test_renders_need_no_ipython():
    code = ("import sys; sys.modules['IPython'] = None\n"
            "from course_lib.grading import check\n"
            "print(check.classifier_metrics([0, 1], [0, 1], min_accuracy=0.5, min_f1=0.5))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[PASSED]" in done.stdout


# --- runner -----------------------------------------------------------------------------------------------------

def test_stub_is_not_attempted():
    def stub(x):
        # YOUR CODE HERE
        raise NotImplementedError()

    with pytest.raises(NotAttempted):
        call_student(stub, 1)


def test_not_implemented_from_a_library_is_an_error():
    import asyncio

    def library_call():
        return asyncio.AbstractEventLoop().run_forever()  # the stdlib raises NotImplementedError

    def like_a_torch_kernel(x):
        error = NotImplementedError("Could not run 'aten::foo' with arguments from the 'Meta' backend")
        raise error  # has a message and is not the stub's line: an error, not "not attempted"

    for fn, args, line in [(library_call, (), "run_forever"), (like_a_torch_kernel, (1,), "raise error")]:
        with pytest.raises(StudentError) as caught:
            call_student(fn, *args)
        assert caught.value.message.startswith("your code raised NotImplementedError")
        assert line in caught.value.student_line


def test_error_names_the_students_line():
    def broken(x):
        y = x + 1
        return y / undefined_name  # noqa: F821

    with pytest.raises(StudentError) as caught:
        call_student(broken, 1)
    assert caught.value.message == "your code raised NameError: name 'undefined_name' is not defined"
    assert caught.value.student_line.startswith("test_grading.py, line ")
    assert caught.value.student_line.endswith("in broken: return y / undefined_name  # noqa: F821")


def test_error_in_a_notebook_cell_names_the_cell_line():
    filename = "/tmp/ipykernel_4242/123456789.py"  # the file name ipykernel gives a cell
    source = "def mask_tokens(x):\n    labels = x\n    return labels[10]\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {}
    exec(compile(source, filename, "exec"), namespace)
    try:
        with pytest.raises(StudentError) as caught:
            call_student(namespace["mask_tokens"], [1, 2])
    finally:
        linecache.cache.pop(filename, None)
    assert caught.value.student_line == "line 3 of its cell, in mask_tokens: return labels[10]"
    assert "IndexError" in caught.value.message


def test_student_frame_prefers_the_cell_over_library_frames():
    frames = [traceback.FrameSummary("/x/site-packages/course_lib/grading/runner.py", 10, "target", line="a"),
              traceback.FrameSummary("/tmp/ipykernel_1/2.py", 4, "fn", line="b"),
              traceback.FrameSummary("/x/site-packages/torch/functional.py", 99, "einsum", line="c")]
    assert student_frame(frames).line == "b"


def test_time_limit_reports_an_endless_loop():
    def endless(x):
        stop = time.monotonic() + 1.5  # ends on its own so the test leaves no busy thread behind for long
        while time.monotonic() < stop:
            x = x + 1
        return x

    start = time.monotonic()
    with time_limit(0.3), pytest.raises(TimedOut) as caught:
        call_student(endless, 0)
    assert time.monotonic() - start < 3
    assert "did not return within 0.3 s" in caught.value.message
    assert "cannot stop a thread" in caught.value.hint
    with pytest.raises(ValueError, match="positive"):
        with time_limit(0):
            pass


def test_mutated_input_is_reported():
    def in_place(x):
        x[1] = 99
        return x

    with pytest.raises(CheckFailure) as caught:
        call_student(in_place, x=torch.tensor([1, 2, 3]))
    assert caught.value.message == "your function changed its input `x` in place."
    assert caught.value.details == ["At [1]: it was 2, after your call it is 99."]


def test_wrong_signature_is_reported():
    with pytest.raises(CheckFailure, match="signature"):
        call_student(lambda a: a, 1, 2)
    with pytest.raises(CheckFailure, match="expected a function"):
        call_student(torch.zeros(2), 1)


def test_student_system_exit_does_not_end_the_process():
    with pytest.raises(StudentError, match="SystemExit"):
        call_student(lambda: sys.exit(3))


# --- compare ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    (None, "`out` is None."),
    ([1.0, 2.0], "`out` should be a torch.Tensor, got list."),
    (torch.zeros(3, 2), "`out` has the wrong shape."),
    (torch.zeros(2, 3, dtype=torch.float64), "`out` has the wrong dtype."),
    (torch.tensor([[0.0, float("nan"), 1.0], [0, 0, 0]]), "`out` contains NaN: 1 of 6 values are not finite."),
    (torch.tensor([[0.0, float("inf"), 1.0], [0, 0, 0]]), "`out` contains inf: 1 of 6 values are not finite."),
])
def test_expect_tensor_failures(value, message):
    with pytest.raises(CheckFailure) as caught:
        expect_tensor(value, "out", shape=(2, 3), dtype=torch.float32)
    assert caught.value.message == message


def test_difference_names_location_size_and_a_counter_example():
    expected = torch.arange(12.0).reshape(2, 2, 3)
    got = expected.clone()
    got[1, 0, 2] += 0.5
    got[0, 1, 1] += 0.1
    lines = describe_difference(got, expected, "weights")
    assert lines[0] == "Largest difference at [1, 0, 2]: got 8.5, expected 8 (tolerance 1e-05 + 0.0001 * |expected|)."
    assert lines[1] == "2 of 12 values are outside the tolerance."
    assert lines[2:] == ["Counter-example, weights[1, 0, :]:", "  got      [6, 7, 8.5]", "  expected [6, 7, 8]"]
    assert_close(expected + 1e-7, expected, "weights")
    with pytest.raises(CheckFailure, match="right shape but wrong values"):
        assert_close(got, expected, "weights")


# --- registry, modes, results file -------------------------------------------------------------------------------

def test_feedback_mode_returns_every_outcome_and_summary_keeps_the_latest(toy_check):
    assert toy_check(lambda x: 2 * x).outcome is Outcome.PASSED
    assert toy_check(lambda x: 3 * x).outcome is Outcome.FAILED
    assert check.mlm_masking(lambda *a, **k: 1 / 0).outcome is Outcome.ERROR
    summary = check.summary()
    assert (summary.score, summary.total) == (0.0, 2.0)
    assert str(summary).splitlines()[0] == "Score: 0 / 2"
    assert [r.outcome for r in check.results()] == [Outcome.FAILED, Outcome.ERROR]


def test_strict_mode_raises_unless_passed(toy_check, monkeypatch):
    monkeypatch.setenv("COURSE_STRICT", "1")
    assert toy_check(lambda x: x + x).passed
    with pytest.raises(CheckFailedError, match=r"strict mode .*\n\[FAILED\] Toy: double"):
        toy_check(lambda x: x)

    def stub(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailedError, match="NOT ATTEMPTED"):
        toy_check(stub)


def test_results_file_gets_one_json_line_per_check_and_summary(toy_check, monkeypatch, tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    monkeypatch.setenv("COURSE_RESULTS", str(path))
    monkeypatch.setenv("COURSE_NOTEBOOK", "02_bert.ipynb")
    toy_check(lambda x: 2 * x)
    toy_check(lambda x: x)
    check.summary()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r.get("outcome")) for r in records] == [("check", "passed"), ("check", "failed"),
                                                                 ("summary", None)]
    assert {r["notebook"] for r in records} == {"02_bert.ipynb"} and len({r["session"] for r in records}) == 1
    assert records[2]["score"] == 0.0 and records[2]["outcomes"] == {"toy_double": "failed"}


def test_a_crashing_check_is_an_error_not_a_crash():
    @register("toy_crash", title="Toy: crash")
    def toy_crash(fn):
        return call_student(fn)["missing"]  # the check trusts the answer's type too much

    try:
        result = check.toy_crash(lambda: {})
    finally:
        del _REGISTRY["toy_crash"]
    assert result.outcome is Outcome.ERROR and "KeyError" in result.message


def test_registry_rejects_bad_names_and_lists_checks():
    with pytest.raises(ValueError, match="already registered"):
        register("mlm_masking", title="again")(lambda fn: None)
    with pytest.raises(ValueError, match="reserved"):
        register("summary", title="clash")(lambda fn: None)
    with pytest.raises(ValueError, match="identifier"):
        register("not a name", title="x")
    with pytest.raises(AttributeError, match="available: .*mlm_masking"):
        getattr(check, "no_such_check")
    assert {"scaled_dot_product_attention", "mlm_masking", "classifier_metrics"} <= set(dir(check))
