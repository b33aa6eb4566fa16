"""Every graded fine-tuning threshold sits below the worst recorded draw of the reference solution.

The draws come from ``benchmarks/grading_thresholds.py`` (recorded in ``benchmarks/results/threshold_draws.json``):
the instructor's solution graded as the re-grade grades it, on at least 20 seeds. A threshold that the reference
misses on one of them would fail a correct student on that draw; a recipe changed after its draws were taken makes
the figures stale, so the recorded solution's digest must match the notebook's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.fine_tuning.draws import RECORD, recorded_draws

ROOT = Path(__file__).resolve().parents[1]
MIN_DRAWS = 20


def _script():
    spec = importlib.util.spec_from_file_location("grading_thresholds", ROOT / "benchmarks" / "grading_thresholds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("grading_thresholds", module)
    spec.loader.exec_module(module)
    return module


script = _script()
SHIPPED = script.shipped_exercises()
RECORDED = json.loads(RECORD.read_text())


def test_every_graded_training_exercise_is_found():
    assert {key.split(":")[0][:2] for key in SHIPPED} >= {"00", "01", "02", "03", "05"}, sorted(SHIPPED)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_threshold_clears_every_recorded_draw(key):
    assert key in RECORDED, f"no recorded draws for {key}: run python benchmarks/grading_thresholds.py"
    entry, exercise = RECORDED[key], SHIPPED[key]
    notebook = nbformat.read(ROOT / "notebooks" / entry["notebook"], as_version=4)
    assert entry["solution_sha256"] == script.solution_digest(notebook, exercise), (
        f"{key}: the reference solution changed after its draws were recorded; measure it again")
    assert entry["kwargs"].get("max_epochs") == exercise.kwargs.get("max_epochs"), "measured under another budget"
    assert len(entry["draws"]) >= MIN_DRAWS
    missed = [row["seed"] for row in entry["draws"] if not script.clears(row, exercise.kwargs)]
    assert not missed, f"{key}: the reference misses the notebook's thresholds {exercise.kwargs} on draws {missed}"


def test_clears_reads_each_direction():
    kwargs = {"min_accuracy": 0.9, "min_f1": 0.8, "max_loss": 6.6}
    assert script.clears({"accuracy": 0.95, "spam F1": 0.85}, kwargs)
    assert not script.clears({"accuracy": 0.95, "spam F1": 0.79}, kwargs)
    assert not script.clears({"held-out nats": 6.61}, kwargs)
    assert script.clears({"held-out nats": 6.59}, kwargs)


def test_table_reports_the_worst_draw_against_the_shipped_threshold(tmp_path):
    key = next(iter(sorted(SHIPPED)))
    exercise = SHIPPED[key]
    record = tmp_path / "draws.json"
    record.write_text(json.dumps({key: {"notebook": key.split(":")[0] + ".ipynb", "check": exercise.check,
                                        "kwargs": exercise.kwargs, "draws": [
                                            {"seed": 1, "accuracy": 1.0, "spam F1": 1.0, "held-out nats": 0.0},
                                            {"seed": 2, "accuracy": 0.0, "spam F1": 0.0, "held-out nats": 99.0}]}}))
    text = script.table(record)
    assert "| 1 / 2 |" in text and "(seeds 1-2)" in text


def test_recorded_draws_reads_the_record_a_notebook_quotes(tmp_path):
    draws = recorded_draws("02_bert", "minilm-spam-800")
    assert draws == RECORDED["02_bert:fine_tuning:minilm-spam-800"]["draws"] and len(draws) >= MIN_DRAWS
    assert all(0.0 < row["spam F1"] <= 1.0 for row in draws)
    assert recorded_draws("02_bert", "no-such-task") is None
    assert recorded_draws("02_bert", "minilm-spam-800", path=tmp_path / "absent.json") is None, \
        "an installed package has no record: None, and the notebook says so"
