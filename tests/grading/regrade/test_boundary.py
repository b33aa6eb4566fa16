"""The re-grade's fine-tuning boundary: training in one process, scoring of plain tensors in another, CPU budget.

A tiny instructor notebook (the tiny spam task, a 1-layer random BERT, seconds per run) is calibrated as the
re-grade calibrates it; hand-made exports then train in the grader process, and a fresh process that never loads
student code scores the saved tensors: on the shipped test split (and says so) or on the instructor's own file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cloudpickle
import nbformat
import pytest
import torch

from course_lib.grading.regrade.boundary import (CPU_FACTOR, OVERHEAD_SLACK, Calibration, calibrate,
                                                 grade_fine_tuning, score_weights)
from course_lib.grading.regrade.scoring import SHIPPED
from course_lib.grading.regrade.sheet import exercise_sheet
from course_lib.grading.runtime.registry import specs
from course_lib.text.spam import load_spam

SOLUTION = '''\
from course_lib.training.loop import fit

def fine_tune(model, batches):
    ### BEGIN SOLUTION
    torch.set_num_threads(1)
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), epochs=4, progress=False)
    return model
    ### END SOLUTION
'''
CALL = 'check.fine_tuning(fine_tune, task="tiny-spam-256", min_accuracy=0.95, min_f1=0.85, max_epochs=4)'
HIDDEN_EPOCHS = '''\
from course_lib.training.loop import fit

def fine_tune(model, batches):
    torch.set_num_threads(1)
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), epochs=4, progress=False)
    every = torch.nn.modules.module._global_forward_pre_hooks
    saved = dict(every), {m: dict(m._forward_pre_hooks) for m in model.modules()}
    every.clear()
    for m in model.modules():
        m._forward_pre_hooks.clear()
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4), epochs=24, progress=False)
    every.update(saved[0])
    for m, hooks in saved[1].items():
        m._forward_pre_hooks.update(hooks)
    return model
'''


def _function(source: str):
    namespace = {"__name__": "__main__", "torch": torch, "math": math}
    exec(source, namespace)
    return namespace["fine_tune"]


def _export(folder: Path, source: str) -> Path:
    export = folder / "exports" / "fine_tune"
    export.parent.mkdir(parents=True)
    export.write_bytes(cloudpickle.dumps(_function(source)))
    return export


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boundary")
    notebook = folder / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch"),
                                                   nbformat.v4.new_code_cell(f"{SOLUTION}\n\n{CALL}")]), notebook)
    exercise = exercise_sheet(nbformat.read(notebook, as_version=4), {n: s.points for n, s in specs().items()})[0]
    return exercise, calibrate(notebook, exercise, 1, 300, folder)


def test_calibration_runs_the_reference_and_a_no_op(calibrated):
    _, calibration = calibrated
    assert calibration.reference["outcome"] == "passed", calibration.reference
    assert calibration.overhead > 0 and calibration.per_epoch >= 0
    assert calibration.allowed(4) == pytest.approx(calibration.overhead * (1 + OVERHEAD_SLACK)
                                                   + CPU_FACTOR * 4 * calibration.per_epoch)


@pytest.fixture(scope="module")
def honest(calibrated, tmp_path_factory):
    exercise, calibration = calibrated
    folder = tmp_path_factory.mktemp("honest")
    return folder, grade_fine_tuning(_export(folder, SOLUTION), exercise, 1, 300, folder, calibration, None)


def test_honest_training_is_scored_in_a_fresh_process_on_the_shipped_split_and_says_so(honest):
    folder, record = honest
    assert record["outcome"] == "passed" and record["score"] == 1.0, record
    assert SHIPPED in record["message"] and "counted by the operating system" in " ".join(record["details"])
    assert (folder / "weights-fine_tuning.safetensors").read_bytes()[:2] != b"\x80\x04"  # not a pickle


def test_training_the_counters_never_see_is_caught_by_the_cpu_budget(calibrated, tmp_path):
    exercise, calibration = calibrated
    record = grade_fine_tuning(_export(tmp_path, HIDDEN_EPOCHS), exercise, 1, 300, tmp_path, calibration, None)
    assert record["outcome"] == "failed" and record["score"] == 0.0, record
    assert record["message"].startswith("over the budget measured by the operating system"), record


def test_scoring_uses_the_instructors_file(calibrated, honest, tmp_path):
    exercise, _ = calibrated
    test = load_spam("test")  # the tiny task's 256 messages stand in for a file the students never had
    scores = {}
    for name, flip in (("heldout.csv", False), ("flipped.csv", True)):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["label", "text"])
            writer.writerows(["spam" if bool(y) != flip else "ham", text]
                             for text, y in zip(test.texts[:256], test.labels[:256]))
        scores[name] = score_weights(honest[0] / "weights-fine_tuning.safetensors", exercise, tmp_path / name, 300,
                                     tmp_path)
        assert f"{name}, held by the instructor" in scores[name]["message"], scores[name]
    assert scores["heldout.csv"]["passed"] and not scores["flipped.csv"]["passed"], scores
    assert scores["heldout.csv"]["metrics"]["accuracy"] > 0.95 > scores["flipped.csv"]["metrics"]["accuracy"]


def test_a_model_the_check_could_not_score_is_never_handed_to_the_scorer(calibrated, tmp_path):
    exercise, _ = calibrated
    other = "def fine_tune(model, batches):\n    return torch.nn.Linear(2, 2)\n"
    record = grade_fine_tuning(_export(tmp_path, other), exercise, 1, 300, tmp_path, Calibration(1.0, 1.0, {}), None)
    assert record["outcome"] == "failed" and not record.get("weights_saved"), record
    assert not (tmp_path / "weights-fine_tuning.safetensors").exists()
