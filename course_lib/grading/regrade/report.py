"""The re-grade's outputs: a CSV (a row per submission, a column per check, a total) and Gradescope-style JSON.

Gradescope's autograder format (https://gradescope-autograders.readthedocs.io/en/latest/specs/) is one object per
submission: ``{"score", "tests": [{"name", "score", "max_score", "output"}], "output", "extra_data"}``. ``--json``
writes one file holding every submission (``{"seed", "submissions": [<Gradescope object>, ...]}``); ``--json-dir``
writes one Gradescope file per submission (``<student>.json``), the file an autograder copies to
``/autograder/results/results.json``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_lib.grading.regrade.sheet import Exercise


@dataclass
class Submission:
    """One graded submission: who, which notebook, how its run went, one result record per exercise."""

    student: str
    path: Path
    notebook: str                          # the instructor notebook's file name
    status: str                            # ok / cell timeout / notebook timeout / kernel died / unreadable / ...
    detail: str
    exercises: list[Exercise] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # cells that raised during the run
    flags: list[str] = field(default_factory=list)    # lines worth a human look (flags.py)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(result["score"] for result in self.results)

    @property
    def max_score(self) -> float:
        return sum(result["points"] for result in self.results)


def write_csv(path: Path, submissions: list[Submission]) -> None:
    """``student, notebook, status, <a column per check>..., total, max, flags``; a check a notebook lacks: empty."""
    columns: list[str] = []
    for submission in submissions:
        columns += [e.column for e in submission.exercises if e.column not in columns]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "notebook", "status", *columns, "total", "max", "flags"])
        for s in submissions:
            scores = {e.column: _number(r["score"]) for e, r in zip(s.exercises, s.results)}
            writer.writerow([s.student, s.notebook, s.status, *[scores.get(c, "") for c in columns],
                             _number(s.score), _number(s.max_score), " | ".join(s.flags)])


def gradescope(submission: Submission, seed: int) -> dict[str, Any]:
    """One submission as a Gradescope results object (what the re-grade knows goes to ``extra_data``)."""
    tests = [{"name": f"{result['title']} ({exercise.column})", "score": result["score"],
              "max_score": result["points"], "output": _output(result), "extra_data": {"outcome": result["outcome"]}}
             for exercise, result in zip(submission.exercises, submission.results)]
    lines = [f"Notebook run: {submission.status} ({submission.detail})."]
    lines += [f"Cell error: {error}" for error in submission.errors[:10]]
    return {"score": submission.score, "execution_time": round(submission.seconds), "output": "\n".join(lines),
            "tests": tests, "extra_data": {"student": submission.student, "submission": str(submission.path),
                                           "notebook": submission.notebook, "status": submission.status,
                                           "seed": seed, "max_score": submission.max_score,
                                           "flags": submission.flags}}


def write_json(path: Path, submissions: list[Submission], seed: int) -> None:
    """Every submission in one file: ``{"seed": ..., "submissions": [<Gradescope object>, ...]}``."""
    data = {"seed": seed, "submissions": [gradescope(s, seed) for s in submissions]}
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


def write_json_dir(folder: Path, submissions: list[Submission], seed: int) -> None:
    """One Gradescope file per submission: ``folder/<student>.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for submission in submissions:
        name = f"{submission.student}.json" if len({s.student for s in submissions}) == len(submissions) \
            else f"{submission.student}-{Path(submission.notebook).stem}.json"
        (folder / name).write_text(json.dumps(gradescope(submission, seed), indent=1, default=str) + "\n",
                                   encoding="utf-8")


def _output(result: dict[str, Any]) -> str:
    """The check's message as the student would read it: outcome, message, details, hint, their line."""
    lines = [f"[{result['outcome'].upper().replace('_', ' ')}] {result['message']}"]
    if result.get("student_line"):
        lines.append(f"Your code: {result['student_line']}")
    lines += list(result.get("details") or [])
    if result.get("hint"):
        lines.append(f"Hint: {result['hint']}")
    if result.get("seed") is not None:
        lines.append(f"Re-grade inputs drawn with seed {result['seed']}.")
    return "\n".join(lines)


def _number(value: float) -> str:
    """3 rather than 3.0; 2.5 as it is."""
    return f"{value:g}"
