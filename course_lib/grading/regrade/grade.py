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
import time
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.regrade.execute import execute_submission
from course_lib.grading.regrade.flags import suspicious_lines
from course_lib.grading.regrade.report import Submission
from course_lib.grading.regrade.sheet import Exercise
from course_lib.grading.runtime.registry import specs

FINE_TUNING_CHECKS = ("fine_tuning", "lm_fine_tuning")  # trained in one process, scored in another (boundary.py)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding course_lib, for the worker's path
# The worker's own folder (where the student's code may write files) must not be on its sys.path: ``-P`` (Python
# 3.11+) or, on 3.10, ``-c`` and removing the '' it puts first; ``-s``: nor the account's own site-packages (a
# notebook could have left a .pth file there).
_WORKER = [sys.executable, "-s", "-P", "-m", "course_lib.grading.regrade.worker"] if sys.version_info >= (3, 11) \
    else [sys.executable, "-s", "-c", "import sys; sys.path.remove(''); from course_lib.grading.regrade.worker import "
          "main; main()"]


def run_worker(export: Path, exercise: Exercise, seed: int, timeout: float, workdir: Path,
               weights: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Grade one exported function in a fresh process; the record it wrote (with ``cpu_seconds``, the process's CPU
    time as the operating system counted it), or why there is none. ``weights``: where to save the scored weights."""
    token = secrets.token_hex(16)
    exports = [str(export)] + [str(export.with_name(name)) for name in exercise.others]
    job = {"token": token, "exports": exports, "check": exercise.check, "kwargs": exercise.kwargs, "seed": seed,
           "weights": None if weights is None else str(weights)}
    log = workdir / f"worker-{exercise.column}.log"
    record, code, cpu = run_process(_WORKER, job, log, timeout, workdir, env)
    if record is not None:
        return {**record, "cpu_seconds": cpu}
    if code is None:
        return _failure(exercise, "timed_out", f"the grader process ran over {timeout:g} s (--check-timeout) "
                        "and was stopped.")
    why = f"signal {-code}" if code < 0 else f"exit code {code}"
    tail = log.read_bytes()[-400:].decode(errors="replace").strip()
    return _failure(exercise, "error", f"the grader process ended without a result ({why}): the function ended the "
                    "process (os._exit, a crash) or broke its output, or the re-grade failed (see its last lines).",
                    details=[tail] if tail else [])


def run_process(command: list[str], job: dict[str, Any], log: Path, timeout: float, workdir: Path,
                extra_env: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, int | None, float]:
    """Run a grader process on ``job`` (with its ``token``): its tagged result (or None), exit code (None: stopped
    after ``timeout``) and CPU seconds (user + system, from the operating system: the process cannot reset them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_STRICT", "COURSE_RESULTS", "COURSE_NOTEBOOK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=workdir, env=env, start_new_session=True)
        process.stdin.write((json.dumps(job) + "\n").encode())
        process.stdin.close()
        end = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                os.killpg(process.pid, signal.SIGKILL)
                _, _, usage = os.wait4(process.pid, 0)
                process.returncode, code = -signal.SIGKILL, None
                break
            time.sleep(0.05)
    cpu = usage.ru_utime + usage.ru_stime
    with open(log, "rb") as file:
        for line in file:
            if line.startswith(f"{job['token']} ".encode()):
                return json.loads(line[len(job["token"]) + 1:]), code, cpu
    return None, code, cpu


def _failure(exercise: Exercise, outcome: str, message: str, details: list[str] | None = None) -> dict[str, Any]:
    """A zero-score record for an exercise the re-grade could not grade normally."""
    spec = specs().get(exercise.check)
    return {"kind": "check", "check": exercise.check, "title": spec.title if spec else exercise.check,
            "outcome": outcome, "score": 0.0, "points": spec.points if spec else 1.0, "message": message,
            "details": details or [], "hint": None, "student_line": None, "seed": None, "tampered": []}


def regrade_one(path: Path, student: str, notebook: str, sheet: list[Exercise], seed: int,
                options: argparse.Namespace, workdir: Path) -> Submission:
    """Execute one submission, then grade each exercise of ``sheet`` (its instructor notebook's) in a fresh process."""
    functions = list(dict.fromkeys(name for e in sheet if e.problem is None for name in e.functions))
    run = execute_submission(path, functions, workdir, cell_timeout=options.cell_timeout,
                             notebook_timeout=options.notebook_timeout)
    submission = Submission(student, path, notebook, run.status, run.detail, sheet, errors=run.errors,
                            seconds=run.seconds)
    if run.notebook is not None:
        submission.flags = suspicious_lines(nbformat.read(path, as_version=4),
                                            exercises=frozenset(name for e in sheet for name in e.functions),
                                            checks={name: e.check for e in sheet for name in e.functions})
        if options.executed:
            target = options.executed / student / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(run.notebook, target)
    for exercise in sheet:
        missing = next((name for name in exercise.functions if not (run.exports / name).is_file()), None)
        error = run.exports / f"{missing}.error"
        if exercise.problem is not None:
            record = _failure(exercise, "error", f"not re-gradable: {exercise.problem}.")
        elif missing is None and exercise.check in FINE_TUNING_CHECKS:
            from course_lib.grading.regrade.boundary import grade_fine_tuning  # it builds on run_worker

            calibration = getattr(options, "calibrations", {}).get((notebook, exercise.column))
            record = grade_fine_tuning(run.exports / exercise.function, exercise, seed, options.check_timeout, workdir,
                                       calibration, getattr(options, "heldout", None))
        elif missing is None:
            record = run_worker(run.exports / exercise.function, exercise, seed, options.check_timeout, workdir)
        elif error.is_file():
            record = _failure(exercise, "error", f"`{missing}` could not be exported from the notebook: "
                              f"{error.read_text(errors='replace')[:300]}")
        else:
            record = _failure(exercise, "error", f"the notebook never defined `{missing}` ({run.status}: "
                              f"{run.detail}).")
        submission.results.append(record)
    return submission
