"""The re-grade's boundary for the fine-tuning exercises: train in one process, score in another, budget by the OS.

1. **Calibration** (once per exercise and run, before any submission, on the same machine): the instructor's
   reference solution (rebuilt from the notebook) and a function that trains nothing run in the training process.
   The no-op's CPU time is the cost of loading and scoring; the reference's, less that, per epoch it trained, the cost
   of an epoch. The reference's outcome is printed: the seed's own check (step 5 of the cycle).
2. **Training**: the student's function trains in a grader process (``worker.py``: the check with its counts, leak
   detection and "suspicious" scores), which saves the weights the check scored as plain tensors (safetensors).
3. **Scoring**: a fresh process (``scoring.py``) that never loads student code puts those tensors into a new model
   of the task's class and scores it on the instructor's labelled file (``--heldout``) or, without one, on the
   shipped test split, and the report says which.
4. **Budget**: the training process's CPU time (user + system, counted by the operating system, which nothing in
   the process can reset; one thread, so that it measures work) may exceed the no-op's (+ ``OVERHEAD_SLACK``) by at
   most ``CPU_FACTOR`` x the reference's CPU per epoch x ``max_epochs``.
"""

from __future__ import annotations

import re
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from course_lib.grading.regrade.grade import run_process, run_worker
from course_lib.grading.regrade.reference import reference_functions
from course_lib.grading.regrade.sheet import Exercise

CPU_FACTOR = 2.0  # an honest solution may spend this many times the reference's CPU per epoch ...
OVERHEAD_SLACK = 0.25  # ... and this much more than the no-op on loading and scoring (measurement noise)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # CPU time then measures work, not threads spinning
_SCORER = [sys.executable, "-s", *(["-P"] if sys.version_info >= (3, 11) else []), "-m",
           "course_lib.grading.regrade.scoring"]  # run in an empty folder of its own: nothing there to import


@dataclass(frozen=True)
class Calibration:
    """CPU seconds of a training process that trains nothing, and of one epoch of the reference's training."""

    overhead: float
    per_epoch: float
    reference: dict[str, Any]

    def allowed(self, max_epochs: float) -> float:
        return self.overhead * (1 + OVERHEAD_SLACK) + CPU_FACTOR * self.per_epoch * max_epochs


def _in_main(source: str, name: str):
    namespace = {"__name__": "__main__"}
    exec(source, namespace)  # noqa: S102 - our own no-op, pickled by value like a notebook's function
    return namespace[name]


def _export(function: Any, exercise: Exercise, folder: Path) -> Path:
    (folder / "exports").mkdir(parents=True, exist_ok=True)
    export = folder / "exports" / exercise.function
    export.write_bytes(cloudpickle.dumps(function))
    return export


def calibrate(notebook: Path, exercise: Exercise, seed: int, timeout: float, workdir: Path) -> Calibration:
    """Run the reference and a no-op through the training process; their CPU times make the budget."""
    reference = reference_functions(notebook, exercise)[0]
    noop = _in_main(f"def {exercise.function}(model, batches):\n    return model\n", exercise.function)
    records = []
    for label, function in (("reference", reference), ("noop", noop)):
        folder = workdir / f"calibrate-{exercise.column}-{label}"
        records.append(run_worker(_export(function, exercise, folder), exercise, seed, timeout, folder,
                                  env=ONE_THREAD))
    text = "\n".join([records[0]["message"], *records[0]["details"]])
    epochs = float(match.group(1)) if (match := re.search(r"([0-9.]+) epochs of", text)) else 0.0
    overhead = records[1].get("cpu_seconds", 0.0)
    per_epoch = max(records[0].get("cpu_seconds", 0.0) - overhead, 0.0) / max(epochs, 1e-9)
    return Calibration(overhead, per_epoch, records[0])


def score_weights(weights: Path, exercise: Exercise, heldout: Path | None, timeout: float, workdir: Path
                  ) -> dict[str, Any]:
    """Score a safetensors file in a fresh process (``scoring.py``) that loads no student code."""
    job = {"token": secrets.token_hex(16), "check": exercise.check, "kwargs": exercise.kwargs, "weights": str(weights),
           "heldout": None if heldout is None else str(heldout)}
    with tempfile.TemporaryDirectory(prefix="course-scorer-") as empty:
        scored, _, _ = run_process(_SCORER, job, workdir / f"scorer-{exercise.column}.log", timeout, Path(empty),
                                   ONE_THREAD)
    return scored or {"passed": False, "message": "the scoring process ended without a result", "data": ""}


def grade_fine_tuning(export: Path, exercise: Exercise, seed: int, timeout: float, workdir: Path,
                      calibration: Calibration | None, heldout: Path | None) -> dict[str, Any]:
    """Train in the grader process, score the saved tensors in a fresh one, hold the CPU budget; one record."""
    weights = workdir / f"weights-{exercise.column}.safetensors"
    record = run_worker(export, exercise, seed, timeout, workdir, weights=weights, env=ONE_THREAD)
    lines, cpu = [], record.get("cpu_seconds")
    over = False
    if calibration is not None and cpu is not None:
        allowed = calibration.allowed(exercise.kwargs["max_epochs"])
        over = cpu > allowed
        lines.append(f"Re-grade budget: the training process used {cpu:.1f} s of CPU (counted by the operating "
                     f"system); allowed {allowed:.1f} s = {calibration.overhead:.1f} s of loading and scoring "
                     f"(+{OVERHEAD_SLACK:.0%}) + {CPU_FACTOR:g} x {calibration.per_epoch:.1f} s per epoch of the "
                     f"reference x {exercise.kwargs['max_epochs']:g} epochs.")
    if not record.get("weights_saved"):  # the check failed before scoring (or could not): its record stands
        return {**record, "details": [*record.get("details", []), *lines]}
    scored = score_weights(weights, exercise, heldout, timeout, workdir)
    lines.append(f"Scored in a fresh process that loaded only the weights: {scored['message']}.")
    final = {**record, "details": [*record.get("details", []), *lines]}
    if over or not scored["passed"]:  # what the count in the training process said, next to the verdict
        final["details"].append(f"The check in the training process: {record['outcome']}: {record['message']}")
    if over:
        final.update(outcome="failed", score=0.0, message="over the budget measured by the operating system: the "
                     "training process used more CPU than the allowed epochs need (see below).",
                     hint="train within max_epochs, in your function, on the model you are given.")
    elif not scored["passed"]:
        final.update(outcome="failed", score=0.0, message=f"below the threshold: {scored['message']}.")
    else:
        final.update(outcome="passed", score=record["points"], message=f"{scored['message']}; trained within the "
                     f"budget ({record['message']})" if record["outcome"] == "passed" else scored["message"])
    return final
