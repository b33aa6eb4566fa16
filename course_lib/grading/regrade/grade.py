"""Grade one submission: run it headless, then each exercise of its sheet in a fresh grader process.

:func:`regrade_one` is what the re-grade command does per submission; :func:`run_worker` starts the grader process
(:mod:`worker`) for one exercise and reads back its result, or says why there is none.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.regrade.execute import execute_submission
from course_lib.grading.regrade.flags import suspicious_lines
from course_lib.grading.regrade.report import Submission
from course_lib.grading.regrade.sheet import Exercise
from course_lib.grading.runtime.registry import specs

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding course_lib, for the worker's path
# The worker's own folder (where the student's code may write files) must not be on its sys.path: ``-P`` (Python
# 3.11+) or, on 3.10, ``-c`` and removing the '' it puts first; ``-s``: nor the account's own site-packages (a
# notebook could have left a .pth file there).
_WORKER = [sys.executable, "-s", "-P", "-m", "course_lib.grading.regrade.worker"] if sys.version_info >= (3, 11) \
    else [sys.executable, "-s", "-c", "import sys; sys.path.remove(''); from course_lib.grading.regrade.worker import "
          "main; main()"]


def run_worker(export: Path, exercise: Exercise, seed: int, timeout: float, workdir: Path) -> dict[str, Any]:
    """Grade one exported function in a fresh process; the record it wrote, or why there is none."""
    token = secrets.token_hex(16)
    job = {"token": token, "export": str(export), "check": exercise.check, "kwargs": exercise.kwargs, "seed": seed}
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_STRICT", "COURSE_RESULTS", "COURSE_NOTEBOOK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    log = workdir / f"worker-{exercise.column}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(_WORKER, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=workdir, env=env, start_new_session=True)
        try:
            process.communicate((json.dumps(job) + "\n").encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return _failure(exercise, "timed_out", f"the grader process ran over {timeout:g} s (--check-timeout) "
                            "and was stopped.")
    with open(log, "rb") as file:
        for line in file:
            if line.startswith(f"{token} ".encode()):
                return json.loads(line[len(token) + 1:])
    code = process.returncode
    why = f"signal {-code}" if code < 0 else f"exit code {code}"
    tail = log.read_bytes()[-400:].decode(errors="replace").strip()
    return _failure(exercise, "error", f"the grader process ended without a result ({why}): the function ended the "
                    "process (os._exit, a crash) or broke its output, or the re-grade failed (see its last lines).",
                    details=[tail] if tail else [])


def _failure(exercise: Exercise, outcome: str, message: str, details: list[str] | None = None) -> dict[str, Any]:
    """A zero-score record for an exercise the re-grade could not grade normally."""
    spec = specs().get(exercise.check)
    return {"kind": "check", "check": exercise.check, "title": spec.title if spec else exercise.check,
            "outcome": outcome, "score": 0.0, "points": spec.points if spec else 1.0, "message": message,
            "details": details or [], "hint": None, "student_line": None, "seed": None, "tampered": []}


def regrade_one(path: Path, student: str, notebook: str, sheet: list[Exercise], seed: int,
                options: argparse.Namespace, workdir: Path) -> Submission:
    """Execute one submission, then grade each exercise of ``sheet`` (its instructor notebook's) in a fresh process."""
    functions = list(dict.fromkeys(e.function for e in sheet if e.problem is None))
    run = execute_submission(path, functions, workdir, cell_timeout=options.cell_timeout,
                             notebook_timeout=options.notebook_timeout)
    submission = Submission(student, path, notebook, run.status, run.detail, sheet, errors=run.errors,
                            seconds=run.seconds)
    if run.notebook is not None:
        submission.flags = suspicious_lines(nbformat.read(path, as_version=4))
        if options.executed:
            target = options.executed / student / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(run.notebook, target)
    for exercise in sheet:
        export = run.exports / exercise.function
        error = export.with_name(export.name + ".error")
        if exercise.problem is not None:
            record = _failure(exercise, "error", f"not re-gradable: {exercise.problem}.")
        elif export.is_file():
            record = run_worker(export, exercise, seed, options.check_timeout, workdir)
        elif error.is_file():
            record = _failure(exercise, "error", f"`{exercise.function}` could not be exported from the notebook: "
                              f"{error.read_text(errors='replace')[:300]}")
        else:
            record = _failure(exercise, "error", f"the notebook never defined `{exercise.function}` ({run.status}: "
                              f"{run.detail}).")
        submission.results.append(record)
    return submission
