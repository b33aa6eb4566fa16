"""The re-grade: honest work passes, wrong work fails, and the tricks that fool the in-notebook checks earn nothing.

One run of the command over small submissions of ``fixtures/regrade/regrade_fixture.ipynb`` (one exercise, scaled
dot-product attention), built here from its released student version: an honest and a wrong solution, the cell-level
tricks (``check`` rebound to a PASSED printer, the check replaced in the registry, its result wrapped, ``torch`` and
``math`` patched; each fools the notebook's own check), notebooks that exit and segfault; in a run of its own, cheap
notebooks that loop and that edit the instructor's notebook. Then the grader
process alone on hand-made exports: tricks aimed at it (a function that patches when called, a pickle that patches
or calls ``setattr`` when loaded, one that prints a fake result and exits, one that lists every object).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import cloudpickle
import nbformat
import pytest
import torch

from course_lib.grading.regrade import cli as regrade
from course_lib.grading.regrade.cli import find_submissions, main, match_instructor, student_ids
from course_lib.grading.regrade.flags import suspicious_lines
from course_lib.grading.regrade.grade import run_worker
from course_lib.grading.regrade.guard import Snapshot
from course_lib.grading.regrade.sheet import Exercise, exercise_sheet
from course_lib.grading.runtime.registry import specs
from course_lib.publishing.release import release_notebook

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "regrade"
INSTRUCTOR = FIXTURES / "regrade_fixture.ipynb"
POINTS = {name: spec.points for name, spec in specs().items()}
ATTENTION = Exercise("scaled_dot_product_attention", "attention", {}, "scaled_dot_product_attention")

CORRECT = '''\
def attention(query, key, value, mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    return weights @ value, weights
'''
WRONG = CORRECT.replace(" / math.sqrt(query.shape[-1])", "")  # forgot sqrt(d_k)

# Cells run before the exercise cell: each makes the notebook's own check report PASSED for WRONG.
REBIND_CHECK = '''\
class AlwaysPassed:
    def __getattr__(self, name):
        return lambda *args, **kwargs: print(f"[PASSED] {name}: all tests passed.")

check = AlwaysPassed()
'''
REPLACE_CHECK = '''\
import dataclasses
import course_lib.grading.runtime.registry as registry

spec = registry._REGISTRY["scaled_dot_product_attention"]
registry._REGISTRY["scaled_dot_product_attention"] = dataclasses.replace(spec, function=lambda fn, **kw: "passed")
'''
WRAP_RESULT = '''\
from course_lib.grading.runtime.result import Outcome

real_getattr = type(check).__getattr__

def always_passed(self, name):
    run = real_getattr(self, name)
    def wrapped(*args, **kwargs):
        result = run(*args, **kwargs)
        result.outcome = Outcome.PASSED
        return result
    return wrapped

type(check).__getattr__ = always_passed
'''
PATCH_LIBRARIES = '''\
math.sqrt = lambda x: 1.0                     # the check's reference now forgets sqrt(d_k) too
torch.isclose = lambda a, b, **kw: torch.ones_like(a, dtype=torch.bool)
torch.allclose = lambda *args, **kw: True
'''
# Functions aimed at the grader's process.
PATCH_WHEN_CALLED = WRONG.replace("    scores = query", "    math.sqrt = lambda x: 1.0\n    scores = query")
PATCH_WHEN_LOADED = '''\
def patch_math():
    import math
    math.sqrt = lambda x: 1.0
    return "loaded"

class Payload:
    def __reduce__(self):
        return patch_math, ()

payload = Payload()
''' + WRONG.replace("    weights = scores", "    payload\n    weights = scores")
EXIT_GRADER = '''\
import os, sys

def attention(query, key, value, mask=None):
    if "ipykernel" not in sys.modules:  # in the re-grade's worker, not in the notebook
        print('{"outcome": "passed", "score": 1.0, "points": 1.0}', flush=True)
        os._exit(0)
    scores = query @ key.transpose(-2, -1)
    weights = scores.softmax(dim=-1)
    return weights @ value, weights
'''

# name: (exercise function or None for the released stub, cells before the exercise, cells after it)
CASES = {
    "exits": (CORRECT, [], ["import os\nos._exit(0)"]),
    "segfaults": (CORRECT, ["import ctypes\nctypes.string_at(0)"], []),
    "honest": (CORRECT, [], []),
    "wrong": (WRONG, [], []),
    "rebinds_check": (WRONG, [REBIND_CHECK], []),
    "replaces_check": (WRONG, [REPLACE_CHECK], []),
    "wraps_result": (WRONG, [WRAP_RESULT], []),
    "patches_libraries": (WRONG, [PATCH_LIBRARIES], []),
}


def build_submission(folder: Path, name: str, case: tuple | None = None) -> Path:
    """``folder/<name>/regrade_fixture.ipynb``: the released notebook with the case's function and extra cells."""
    function, before, after = case or CASES[name]
    student = release_notebook(nbformat.read(INSTRUCTOR, as_version=4), INSTRUCTOR.name)
    exercise = next(i for i, cell in enumerate(student.cells) if "def attention" in cell.source)
    if function is not None:
        call = student.cells[exercise].source.split("\n\n\n")[-1]
        student.cells[exercise].source = f"{function}\n\n{call}"
    student.cells[exercise + 1:exercise + 1] = [nbformat.v4.new_code_cell(source) for source in after]
    student.cells[exercise:exercise] = [nbformat.v4.new_code_cell(source) for source in before]
    path = folder / name / INSTRUCTOR.name
    path.parent.mkdir(parents=True)
    nbformat.write(student, path)
    return path


def _instructor_only(instructor: list[Path]) -> list[Path]:
    """What the re-grade watches in these tests: the instructor's notebooks (the checkout may change meanwhile)."""
    return instructor


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    """Re-grade every case once, then a damaged file (two at a time); outputs by student."""
    folder = tmp_path_factory.mktemp("regrade")
    paths = [build_submission(folder / "submissions", name) for name in CASES]
    (folder / "submissions" / "broken").mkdir()
    broken = folder / "submissions" / "broken" / INSTRUCTOR.name
    broken.write_text("{ not a notebook")
    out, results, executed = folder / "scores.csv", folder / "results.json", folder / "executed"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regrade, "_watched_files", _instructor_only)
        code = main([*map(str, paths), str(broken), "--instructor", str(FIXTURES), "--out", str(out), "--json",
                     str(results), "--json-dir", str(folder / "gradescope"), "--seed", "4242", "--jobs", "2",
                     "--cell-timeout", "60", "--notebook-timeout", "300", "--check-timeout", "120", "--executed",
                     str(executed)])
    assert code == 0
    rows = {row["student"]: row for row in csv.DictReader(out.open())}
    data = json.loads(results.read_text())
    by_student = {s["extra_data"]["student"]: s for s in data["submissions"]}
    return rows, by_student, data, folder


def test_every_submission_gets_a_row_and_the_seed_is_recorded(regraded):
    rows, by_student, data, folder = regraded
    assert list(rows) == [*CASES, "broken"]  # in the order given; the run went on after the exit and the segfault
    assert list(next(iter(rows.values()))) == ["student", "notebook", "status", "scaled_dot_product_attention",
                                               "total", "max", "flags"]
    assert data["seed"] == 4242 and all(row["max"] == "1" for row in rows.values())
    one = json.loads((folder / "gradescope" / "honest.json").read_text())
    assert set(one) >= {"score", "tests", "output"} and one["tests"][0]["max_score"] == 1.0


def test_honest_passes_and_wrong_fails(regraded):
    rows, by_student, _, _ = regraded
    assert rows["honest"]["scaled_dot_product_attention"] == "1" and rows["honest"]["status"] == "ok"
    assert rows["honest"]["flags"] == ""
    test = by_student["honest"]["tests"][0]
    assert test["score"] == 1.0 and "seed 4242" in test["output"]
    assert rows["wrong"]["total"] == "0" and by_student["wrong"]["tests"][0]["extra_data"]["outcome"] == "failed"
    assert "sqrt" in by_student["wrong"]["tests"][0]["output"]  # the check's own hint reaches the student


@pytest.mark.parametrize("name", ["rebinds_check", "replaces_check", "wraps_result", "patches_libraries"])
def test_cell_level_tricks_fool_the_notebook_but_earn_nothing(regraded, name):
    rows, by_student, _, folder = regraded
    executed = nbformat.read(folder / "executed" / name / INSTRUCTOR.name, as_version=4)
    shown = "".join(str(output) for cell in executed.cells for output in cell.get("outputs", []))
    assert "PASSED" in shown and "FAILED" not in shown, shown[-500:]  # the notebook's own check was fooled
    assert rows[name]["total"] == "0" and rows[name]["status"] == "ok"
    assert by_student[name]["tests"][0]["extra_data"]["outcome"] == "failed"
    assert rows[name]["flags"]  # the instructor is pointed at the cell


@pytest.fixture(scope="module")
def cheap_run(tmp_path_factory):
    """Notebooks without torch in the kernel, so that a 3 s cell limit stops only the loop on a loaded machine: one
    that loops, one after it, one that edits the instructor's notebook (the run stops), one that is never run."""
    folder = tmp_path_factory.mktemp("cheap")
    instructor = folder / "instructor" / INSTRUCTOR.name
    instructor.parent.mkdir()
    instructor.write_bytes(INSTRUCTOR.read_bytes())
    cases = {"loops": ["import math", "while True:\n    pass", CORRECT], "next": ["import math", CORRECT],
             "edits_instructor": ["import math", CORRECT, f"open({str(instructor)!r}, 'a').write(' ')"],
             "never_run": ["import math", CORRECT]}
    paths = []
    for name, cells in cases.items():
        paths.append(folder / name / INSTRUCTOR.name)
        paths[-1].parent.mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), paths[-1])
    out = folder / "scores.csv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regrade, "_watched_files", _instructor_only)
        code = main([*map(str, paths), "--instructor", str(instructor.parent), "--out", str(out),
                     "--cell-timeout", "3"])
    return code, {row["student"]: row for row in csv.DictReader(out.open())}


def test_a_loop_is_interrupted_and_the_run_goes_on(cheap_run):
    _, rows = cheap_run
    assert rows["loops"]["status"] == "cell timeout" and rows["loops"]["total"] == "1"  # the exercise after it counts
    assert rows["next"]["status"] == "ok" and rows["next"]["total"] == "1"


def test_a_notebook_that_edits_the_grader_stops_the_run(cheap_run):
    code, rows = cheap_run
    assert code == 3 and list(rows) == ["loops", "next", "edits_instructor"]
    assert rows["edits_instructor"]["total"] == "1"  # graded with the sheet read before any student code ran


def test_exits_and_crashes_are_reported(regraded):
    rows, by_student, _, _ = regraded
    assert rows["exits"]["status"] == "kernel died" and rows["exits"]["total"] == "1"  # exported before the exit
    assert rows["segfaults"]["status"] == "kernel died" and rows["segfaults"]["total"] == "0"
    assert "never defined" in by_student["segfaults"]["tests"][0]["output"]
    assert rows["broken"]["status"] == "unreadable" and rows["broken"]["total"] == "0"


def test_executed_notebooks_keep_the_submissions_cell_numbers(regraded):
    _, by_student, _, folder = regraded
    submitted = nbformat.read(folder / "submissions" / "exits" / INSTRUCTOR.name, as_version=4)
    executed = nbformat.read(folder / "executed" / "exits" / INSTRUCTOR.name, as_version=4)
    assert [cell.source for cell in executed.cells] == [cell.source for cell in submitted.cells]  # markdown kept
    number = int(re.search(r"kernel died in cell (\d+)", json.dumps(by_student["exits"])).group(1))
    assert "os._exit" in executed.cells[number].source


# --- the worker alone, on hand-made exports (no kernel) ---

def _worker(tmp_path: Path, payload: object, exercise: Exercise = ATTENTION, seed: int = 3) -> dict:
    """Grade ``payload`` (exported with cloudpickle, as the export cell does) in a fresh worker process."""
    export = tmp_path / "exports" / exercise.function
    export.parent.mkdir()
    export.write_bytes(cloudpickle.dumps(payload))
    return run_worker(export, exercise, seed=seed, timeout=300, workdir=tmp_path)


FINE_TUNE = '''\
from course_lib.training.loop import fit

def fine_tune(model, batches):
    torch.set_num_threads(1)
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), epochs=4)
    return model
'''


def test_worker_trains_the_fine_tuning_exercise_on_the_held_out_seed(tmp_path):
    exercise = Exercise("fine_tuning", "fine_tune", {"task": "tiny-spam-256", "min_accuracy": 0.95, "min_f1": 0.85,
                                                     "max_epochs": 4}, "fine_tuning")
    record = _worker(tmp_path, _notebook_function(FINE_TUNE, "fine_tune"), exercise, seed=1)
    assert record["outcome"] == "passed" and record["seed"] == 1, record  # torch's own lazy wrappers are no tampering


def _notebook_function(source: str, name: str = "attention"):
    """The function ``name`` defined by ``source`` as a notebook defines it (in ``__main__``: pickled by value)."""
    namespace = {"__name__": "__main__", "math": math, "torch": torch}
    exec(source, namespace)
    return namespace[name]


class Crafted:
    """A pickle that patches when loaded: ``setattr(math, "sqrt", math.floor)``."""

    def __reduce__(self):
        return setattr, (math, "sqrt", math.floor)


def test_worker_grades_a_stub_as_not_attempted(tmp_path):
    stub = "def attention(query, key, value, mask=None):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert _worker(tmp_path, _notebook_function(stub))["outcome"] == "not_attempted"


def test_worker_undoes_and_fails_a_function_that_patches_when_called(tmp_path):
    record = _worker(tmp_path, _notebook_function(PATCH_WHEN_CALLED))
    assert record["outcome"] == "failed" and "math.sqrt" in " ".join(record["details"]), record


def test_worker_undoes_and_fails_a_pickle_that_patches_when_loaded(tmp_path):
    record = _worker(tmp_path, _notebook_function(PATCH_WHEN_LOADED))
    assert record["outcome"] == "failed" and record["message"].startswith("loading your `attention`"), record
    assert "math.sqrt" in " ".join(record["details"])


def test_worker_refuses_a_crafted_pickle(tmp_path):
    record = _worker(tmp_path, Crafted())
    assert record["outcome"] == "error" and "builtins.setattr" in record["message"], record


def test_worker_refuses_reaching_for_the_interpreter(tmp_path):
    source = CORRECT.replace("    scores =", "    import gc\n    gc.get_objects()\n    scores =")
    record = _worker(tmp_path, _notebook_function(source))
    assert record["outcome"] == "failed" and "gc.get_objects" in " ".join(record["details"]), record


def test_worker_refuses_a_thread_left_to_patch_later(tmp_path):
    source = CORRECT.replace("    scores =", "    import threading, time\n"
                             "    threading.Thread(target=lambda: time.sleep(30), daemon=True).start()\n    scores =")
    record = _worker(tmp_path, _notebook_function(source))
    assert record["outcome"] == "failed" and "leaving a thread running" in " ".join(record["details"]), record


def test_a_fake_result_and_an_exit_in_the_grader_earn_nothing(tmp_path):
    record = _worker(tmp_path, _notebook_function(EXIT_GRADER))
    assert record["outcome"] == "error" and "without a result" in record["message"], record


def test_snapshot_puts_back_what_was_patched():
    from course_lib.grading.fine_tuning.tasks import get_task

    snapshot, real, task = Snapshot(), torch.isclose, get_task("tiny-spam-256")
    try:
        torch.isclose = lambda *args, **kwargs: True
        torch.Tensor.__sub__ = lambda a, b: a  # hides the inherited method
        object.__setattr__(task, "test_messages", 8)  # a frozen dataclass
        torch.nn.modules.module.register_module_forward_hook(lambda module, inputs, output: output)
        changed = sorted(snapshot.restore())
    finally:
        snapshot.restore()  # whatever happened, leave torch as it was
    assert changed == ["course_lib.grading.fine_tuning.tasks.FINE_TUNING_TASKS['tiny-spam-256'].test_messages", "torch.Tensor.__sub__",
                       "torch.isclose", "torch.nn.modules.module._global_forward_hooks (a hook on every module)"]
    assert torch.isclose is real and "__sub__" not in vars(torch.Tensor) and task.test_messages == 256
    assert not torch.nn.modules.module._global_forward_hooks and snapshot.restore() == []


# --- the sheet, ids, flags ---

def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_sheet_reads_exercises_and_literal_arguments():
    sheet = exercise_sheet(nbformat.read(INSTRUCTOR, as_version=4), POINTS)
    assert [(e.check, e.function, e.kwargs, e.problem) for e in sheet] == [
        ("scaled_dot_product_attention", "attention", {}, None)]
    solution = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    notebook = _notebook(solution, "%time 1\ncheck.scaled_dot_product_attention(f, mask_style='boolean')",
                         "check.scaled_dot_product_attention(f, mask_style=style)",
                         "check.scaled_dot_product_attention(library_attention)", "check.summary()",
                         "check.no_such_check(f)")
    sheet = exercise_sheet(notebook, POINTS)
    assert [e.column for e in sheet] == ["scaled_dot_product_attention", "scaled_dot_product_attention_2",
                                         "no_such_check"]
    assert sheet[0].kwargs == {"mask_style": "boolean"} and sheet[0].problem is None
    assert "not a literal" in sheet[1].problem and "no registered check" in sheet[2].problem


def test_student_ids_and_matching(tmp_path):
    paths = [tmp_path / "alice" / "02_bert.ipynb", tmp_path / "bob" / "02_bert.ipynb", tmp_path / "carol_00.ipynb"]
    for path in paths:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}")
    assert student_ids(find_submissions([tmp_path])) == ["alice", "bob", "carol_00"]
    instructor = {"00_transfer.ipynb": Path("a"), "02_bert.ipynb": Path("b")}
    assert match_instructor(paths[0], instructor) == Path("b")
    assert match_instructor(tmp_path / "alice_02_bert_late.ipynb", instructor) == Path("b")
    assert match_instructor(paths[2], instructor) is None


def test_flags_point_at_tricks_not_at_honest_code():
    assert suspicious_lines(_notebook("import math\nimport torch\n" + CORRECT)) == []
    flags = suspicious_lines(_notebook(REBIND_CHECK, PATCH_LIBRARIES, "import os\nos._exit(0)"))
    assert flags[0] == "cell 0: rebinds `check`" and "cell 1: assigns math.sqrt" in flags
    assert any("_exit" in flag for flag in flags)
