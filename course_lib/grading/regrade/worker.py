"""The re-grade's grader: one fresh process per exercise, ``python -P -m course_lib.grading.regrade.worker``.

It reads one JSON line on stdin, ``{"token", "exports", "check", "kwargs", "seed"}``, imports the grader, snapshots
it (:mod:`guard`), loads the student's exported functions, runs the registered check with the instructor's
literal keyword arguments and the re-grade's seed, and writes one line, ``<token> <JSON result>``, to the output it
held before any student code ran. The token is drawn by the re-grade for this run and never written where the
notebook could read it, so a function that prints a fake result earns nothing; one that ends the process
(``os._exit``, a crash) leaves no result line, and the re-grade reports that. With ``"weights"`` in the job (a
fine-tuning exercise), the weights the check scored are saved there as plain tensors for the scorer (:mod:`scoring`).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from course_lib.grading.fine_tuning import trained_weights
from course_lib.grading.regrade.guard import Guard
from course_lib.grading.runtime.registry import CheckUsageError, grade, specs

_LIBRARY_HINT = "write the function in the notebook: the library's version is the answer the check compares with."


def grade_export(exports: Path | list[Path], check: str, kwargs: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """Grade the functions pickled in ``exports`` (one file each, in the call's order) with ``check``; a JSON-ready
    record (never raises)."""
    spec = specs()[check]
    exports = [exports] if isinstance(exports, Path) else list(exports)
    name = ", ".join(export.name for export in exports)
    guard = Guard()
    functions = []
    for export in exports:
        try:
            functions.append(guard.load(export.read_bytes()))
        except Exception as exc:  # noqa: BLE001 - a damaged or refused export is the student's outcome, not a crash
            return _record(spec, "error", f"the re-grade could not load your `{export.name}` ({type(exc).__name__}: "
                           f"{exc}).", tampered=guard.refused + guard.changed)
        if guard.refused or guard.changed:
            return _tampered(spec, guard, f"loading your `{export.name}`")
    for export, function in zip(exports, functions):
        module = getattr(function, "__module__", None)
        if isinstance(module, str) and module != "__main__" and not module.startswith("__"):
            return _record(spec, "failed", f"`{export.name}` is `{module}."
                           f"{getattr(function, '__qualname__', export.name)}`, a library function, not code written "
                           "in the notebook.", hint=_LIBRARY_HINT)
    kwargs = dict(kwargs)
    if seed is not None and "seed" in inspect.signature(spec.function).parameters:
        kwargs["seed"] = seed
    try:
        result = grade(check, *map(guard.wrap, functions), **kwargs)
    except CheckUsageError as exc:
        return _record(spec, "error", f"re-grade problem (the instructor's call, not the student): {exc}")
    guard.check_patches()
    if guard.refused or guard.changed:
        return _tampered(spec, guard, f"grading your `{name}`")
    return {**result.to_record(), "tampered": []}


def _tampered(spec, guard: Guard, when: str) -> dict[str, Any]:
    """The record of a check whose student code patched the grader or did what the re-grade refuses."""
    details = ([f"Changed (and put back): {', '.join(guard.changed)}"] if guard.changed else []) + \
              ([f"Refused: {', '.join(guard.refused)}"] if guard.refused else [])
    return _record(spec, "failed", f"{when} changed the grader's tools or reached for the interpreter; the re-grade "
                   "gives no credit for that.", details=details, tampered=guard.changed + guard.refused)


def _record(spec, outcome: str, message: str, *, details: list[str] | None = None, hint: str | None = None,
            tampered: list[str] | None = None) -> dict[str, Any]:
    """A result record in the shape of ``CheckResult.to_record()``, for outcomes decided by the re-grade itself."""
    return {"kind": "check", "check": spec.name, "title": spec.title, "outcome": outcome, "score": 0.0,
            "points": spec.points, "message": message, "details": details or [], "hint": hint, "student_line": None,
            "seed": None, "tampered": tampered or []}


def threshold_only(record: dict[str, Any]) -> bool:
    """True when the check scored the rebuilt model: it passed, or failed on a threshold alone."""
    return record["outcome"] == "passed" or (record["outcome"] == "failed" and not record.get("tampered") and any(
        record["message"].startswith(text) for text in ("below the threshold", "held-out loss above the threshold")))


def save_scored_weights(record: dict[str, Any], scored: list, path: Path) -> bool:
    """Save the weights the check scored as plain tensors (safetensors) for the scorer; only when it scored them."""
    if not threshold_only(record) or type(scored) is not list or len(scored) != 1:
        return False
    tensors = {name: value.detach().cpu().clone().contiguous()
               for name, value in trained_weights.plain_weights(scored[0]).items()}
    save_file(tensors, str(path))
    return True


def main() -> None:
    """Read the job, grade, write ``<token> <record>`` to the original stdout, and end without running exit hooks."""
    job = json.loads(sys.stdin.readline())
    sys.stdin.close()
    output = os.dup(1)  # held before the student's code runs; it may replace sys.stdout or close fd 1
    token = job.pop("token")
    scored = trained_weights.LAST_SCORED  # held before the student's code runs: a rebound name is noticed below
    scored.clear()
    record = grade_export([Path(export) for export in job["exports"]], job["check"], job["kwargs"], job.get("seed"))
    if job.get("weights"):
        record["weights_saved"] = trained_weights.LAST_SCORED is scored and save_scored_weights(
            record, scored, Path(job["weights"]))
    sys.stdout.flush()
    os.write(output, f"\n{token} {json.dumps(record, default=str)}\n".encode())
    os._exit(0)  # the student's atexit hooks and daemon threads do not get to run after the result


if __name__ == "__main__":
    main()
