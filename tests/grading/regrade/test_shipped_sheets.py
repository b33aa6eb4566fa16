"""Every exercise of every shipped notebook can be re-graded, and each reference solution earns its points there.

The sheet is read as the re-grade reads it (:func:`exercise_sheet`). Each reference is rebuilt from the instructor
notebook as its kernel defines it (:func:`reference_functions`: the imports, the globals it uses, the function) and
graded with the re-grade's literal arguments and a re-grade seed: in this process for the quick checks, and through
the grader process for the one that takes two functions (``sampling_filters``). The fine-tuning exercises train for
minutes on the real models; their reference is measured by ``benchmarks/grading_thresholds.py`` instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import cloudpickle
import nbformat
import pytest
import torch

from course_lib.grading.regrade.grade import run_worker
from course_lib.grading.regrade.reference import reference_functions
from course_lib.grading.regrade.sheet import exercise_sheet
from course_lib.grading.runtime.registry import grade, specs

NOTEBOOKS = sorted((Path(__file__).resolve().parents[3] / "notebooks").glob("*.ipynb"))
POINTS = {name: spec.points for name, spec in specs().items()}
TRAINING = {"fine_tuning", "lm_fine_tuning"}  # minutes each on the real models: benchmarks/grading_thresholds.py
SEEDS = (20251207, 7)


def _sheet(path: Path):
    return exercise_sheet(nbformat.read(path, as_version=4), POINTS)


def test_every_shipped_exercise_is_re_gradable():
    sheets = {path.name: _sheet(path) for path in NOTEBOOKS}
    assert all(sheets.values()) and len(NOTEBOOKS) >= 6
    problems = [f"{name}: {e.column}: {e.problem}" for name, sheet in sheets.items() for e in sheet if e.problem]
    assert problems == []
    assert [e.functions for e in sheets["05_gpt2.ipynb"] if e.check == "sampling_filters"] == [("top_k", "nucleus")]


@pytest.mark.parametrize("path, exercise", [(path, exercise) for path in NOTEBOOKS for exercise in _sheet(path)
                                            if exercise.check not in TRAINING],
                         ids=lambda value: value.name if isinstance(value, Path) else value.column)
def test_each_reference_earns_full_marks_with_the_regrades_arguments(path, exercise):
    functions = reference_functions(path, exercise)
    for seed in SEEDS:
        result = grade(exercise.check, *functions, **exercise.kwargs, seed=seed)
        assert result.passed and result.score == POINTS[exercise.check], f"{path.name}, seed {seed}: {result}"


def test_the_two_function_exercise_scores_full_marks_through_the_grader_process(tmp_path):
    path = next(path for path in NOTEBOOKS if path.name == "05_gpt2.ipynb")
    exercise = next(e for e in _sheet(path) if e.check == "sampling_filters")
    exports = tmp_path / "exports"
    exports.mkdir()
    for name, function in zip(exercise.functions, reference_functions(path, exercise)):
        (exports / name).write_bytes(cloudpickle.dumps(function))
    start = time.monotonic()
    record = run_worker(exports / exercise.function, exercise, seed=SEEDS[0], timeout=300, workdir=tmp_path)
    assert record["outcome"] == "passed" and record["score"] == POINTS["sampling_filters"], record
    assert time.monotonic() - start < 120 and torch.get_num_threads() >= 1
