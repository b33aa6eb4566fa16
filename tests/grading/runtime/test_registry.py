"""The grading machinery: results and their renders, the safe runner, tensor comparisons, modes, results file, sheet.

The time limit has its own file (test_deadline.py), and so do copies, changed inputs and answer kinds
(test_inputs.py) and the fine-tuning check (tests/grading/fine_tuning/test_classifier_check.py).
"""

from __future__ import annotations

import json
import linecache
import subprocess
import sys
import traceback

import pytest
import torch

from course_lib.grading import (
    CheckFailedError,
    CheckFailure,
    CheckResult,
    CheckUsageError,
    Outcome,
    check,
    grade,
    register,
)
from course_lib.grading.runtime.compare import assert_close, describe_difference, expect_tensor
from course_lib.grading.runtime.registry import unregister
from course_lib.grading.runtime.runner import NotAttempted, StudentError, call_student, student_frame


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
    unregister("toy_double")


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
            "print(check.discriminative_lr_groups(lambda groups, lr, decay=2.6: None))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[FAILED] Discriminative learning rates" in done.stdout and "Inputs drawn with seed" in done.stdout


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
    assert caught.value.student_line.startswith("test_registry.py, line ")
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


def test_mutated_input_is_reported():
    def in_place(x):
        x[1] = 99
        return x

    with pytest.raises(CheckFailure) as caught:
        call_student(in_place, x=torch.tensor([1, 2, 3]))
    assert caught.value.message == ("your function changed its input `x`: `x` changed at [1]: it was 2, after your "
                                    "call it is 99.")


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
    assert set(records[0]) == {"notebook", "session", "time", "kind", "check", "title", "outcome", "score", "points",
                                "message", "details", "hint", "student_line", "seed"}


def test_a_crashing_check_is_an_error_not_a_crash():
    @register("toy_crash", title="Toy: crash")
    def toy_crash(fn):
        return call_student(fn)["missing"]  # the check trusts the answer's type too much

    try:
        result = check.toy_crash(lambda: {})
    finally:
        unregister("toy_crash")
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
    assert {"scaled_dot_product_attention", "mlm_masking", "fine_tuning"} <= set(dir(check))
    assert "classifier_metrics" not in dir(check)  # replaced by fine_tuning (issue 14)
    with pytest.raises(CheckUsageError, match="no check named"):
        grade("no_such_check", print)
    with pytest.raises(CheckUsageError, match="time_limit must be positive"):
        check.mlm_masking(print, time_limit=None)  # every check runs under a limit
    with pytest.raises(CheckUsageError, match="seed must be"):
        check.mlm_masking(print, seed=-1)


# --- the exercise sheet (issue 14 item 4) --------------------------------------------------------------------------

def test_summary_lists_the_whole_sheet_before_anything_runs(toy_check):
    check.sheet("02_bert", ["mlm_masking", "toy_double", "fine_tuning"])
    summary = check.summary()
    assert (summary.score, summary.total) == (0.0, 3.0)
    assert [r.outcome for r in summary.results] == [Outcome.NOT_ATTEMPTED] * 3
    text = str(summary)
    assert text.splitlines()[0] == "Score: 0 / 3" and text.count("NOT ATTEMPTED") == 3
    assert "Fine-tuning" in text and "Masked LM" in text
    toy_check(lambda x: 2 * x)
    summary = check.summary()
    assert str(summary).splitlines()[0] == "Score: 1 / 3"
    assert [r.name for r in summary.results] == ["mlm_masking", "toy_double", "fine_tuning"]  # the sheet's order
    assert "PASSED" in summary._repr_html_() and summary._repr_html_().count("NOT ATTEMPTED") == 2


def test_checks_off_the_sheet_are_appended_and_bad_sheets_refused(toy_check):
    check.sheet("00_transfer_learning", ["discriminative_lr_groups"])
    toy_check(lambda x: x)
    assert [r.name for r in check.summary().results] == ["discriminative_lr_groups", "toy_double"]
    with pytest.raises(CheckUsageError, match="unknown: \\['typo'\\]"):
        check.sheet("00", ["typo"])
    with pytest.raises(CheckUsageError, match="once each"):
        check.sheet("00", ["mlm_masking", "mlm_masking"])
    with pytest.raises(CheckUsageError, match="notebook"):
        check.sheet("", ["mlm_masking"])


def test_sheet_names_the_notebook_in_the_results_file(toy_check, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "r.jsonl"))
    monkeypatch.delenv("COURSE_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    check.sheet("02_bert", ["toy_double"])
    check.summary()
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["notebook"] == "02_bert" and record["outcomes"] == {"toy_double": "not_attempted"}


def test_released_notebook_summary_lists_every_exercise(tmp_path):
    """A fresh process, as in a released notebook where only the setup cell and the summary run."""
    code = ("from course_lib.grading import check\n"
            "check.sheet('02_bert', ['mlm_masking', 'fine_tuning'])\n"
            "print(check.summary())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "Score: 0 / 2" and done.stdout.count("NOT ATTEMPTED") == 2


def test_grade_records_nothing_and_never_raises_in_strict_mode(toy_check, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_STRICT", "1")
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "r.jsonl"))
    result = grade("toy_double", lambda x: x)
    assert result.outcome is Outcome.FAILED and check.results() == [] and not (tmp_path / "r.jsonl").exists()


def test_drawn_seed_is_reported_and_repeats_the_draw():
    def hard_coded(groups, lr, decay=2.6):
        return [{"params": g.params, "lr": 1e-3 / 2.6 ** (len(groups) - 1 - i)} for i, g in enumerate(groups)]

    first = check.discriminative_lr_groups(hard_coded)
    assert first.outcome is Outcome.FAILED and first.seed is not None
    assert f"Inputs drawn with seed {first.seed}: check.discriminative_lr_groups(..., seed={first.seed})" in str(first)
    again = check.discriminative_lr_groups(hard_coded, seed=first.seed)
    assert (again.message, again.details) == (first.message, first.details)
    seeds = {check.discriminative_lr_groups(hard_coded).seed for _ in range(5)}
    assert len(seeds) == 5  # a fresh draw at every call
