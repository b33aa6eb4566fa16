"""Scores from the students' own runs: ``bash scripts/course.sh scores RESULTS... --out scores.csv``.

    bash scripts/course.sh scores results/ --out progress.csv            # every *.jsonl under results/
    bash scripts/course.sh scores alice.jsonl bob.jsonl --out progress.csv --notebook 02_bert

Each RESULTS file is what one student's kernels appended with ``COURSE_RESULTS`` set (one JSON line per check, see
``registry._append_record``). The CSV has the re-grade's format (``regrade.report.write_csv``): a row per student and
notebook, ``student, notebook, status, <a column per check>..., total, max, flags``.

- **Who**: the student's id is the file name's stem (``alice.jsonl`` -> ``alice``), or its folder's name when several
  files share a name (``alice/results.jsonl`` -> ``alice``), as the re-grade names submissions.
- **Which notebook**: the record's ``notebook`` matched to an instructor notebook (``--instructor``, default
  ``notebooks/``) as the re-grade matches submissions (same name, or a name it contains); the columns are that
  notebook's exercise sheet. Rows: every notebook any student ran (or those named by ``--notebook``), for every
  student, so a student who never ran a notebook's checks still has its row.
- **Which result**: the latest record per check (by its ``time``, then its place in the files). A check scores its
  registered points when its outcome is ``passed``, else 0; a record that claims other points is flagged.
- **Status**: ``ok`` (every check of the sheet ran), ``not run: <checks>`` (those score 0), or ``never ran a check``.
- A line that is not a check record (not JSON, no ``check``, an unknown check, no notebook) is reported on stderr
  with its file and line number, and counted in the row's ``flags``; it stops nothing.

These files are written by the students' kernels: progress and feedback, not grades (docs/instructors.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.regrade.cli import match_instructor, student_ids
from course_lib.grading.regrade.report import Submission, write_csv
from course_lib.grading.regrade.sheet import Exercise, exercise_sheet
from course_lib.grading.runtime.registry import specs

NEVER_RAN = "never ran a check"


@dataclass
class Record:
    """One check record of a results file, where it came from, and its place (for "latest wins")."""

    notebook: str      # the instructor notebook's file name (or the record's own name, .ipynb added)
    check: str
    outcome: str
    points_claimed: Any
    time: str
    order: tuple[int, int]   # (file index, line number)
    raw: dict


@dataclass
class StudentFile:
    """The records of one student's files, and the lines that were not check records."""

    student: str
    paths: list[Path]
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_results(paths: list[Path]) -> list[Path]:
    """The files named, and every ``*.jsonl`` under the folders named, in order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.jsonl"))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"no results file at {path}")
    if not found:
        raise ValueError(f"no *.jsonl results files in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(p.resolve() for p in found))


def notebook_name(recorded: str, instructor: dict[str, Path]) -> str | None:
    """The instructor notebook a record's ``notebook`` names (``02_bert``, ``alice_02_bert.ipynb``, a path...);
    its own name (``.ipynb`` added) when none matches; None when it is empty."""
    name = Path(str(recorded).strip()).name
    if not name:
        return None
    name = name if name.endswith(".ipynb") else f"{name}.ipynb"
    matched = match_instructor(Path(name), instructor)
    return matched.name if matched is not None else name


def read_student(student: str, paths: list[Path], file_index: dict[Path, int], instructor: dict[str, Path]
                 ) -> StudentFile:
    """Every check record in the student's files; each other line becomes a problem ("file:line: why")."""
    result = StudentFile(student, paths)
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    result.problems.append(f"{where}: not a JSON line ({exc.msg})")
                    continue
                if not isinstance(record, dict):
                    result.problems.append(f"{where}: not a JSON object")
                    continue
                if record.get("kind", "check") == "summary":
                    continue  # check.summary(): the checks' own lines already say it all
                name, outcome = record.get("check"), record.get("outcome")
                if not isinstance(name, str) or not isinstance(outcome, str):
                    result.problems.append(f"{where}: no 'check' and 'outcome'")
                    continue
                if name not in specs():
                    result.problems.append(f"{where}: unknown check {name!r}")
                    continue
                notebook = notebook_name(record.get("notebook") or "", instructor)
                if notebook is None:
                    result.problems.append(f"{where}: no notebook named (set check.sheet or COURSE_NOTEBOOK)")
                    continue
                result.records.append(Record(notebook, name, outcome, record.get("points"),
                                             str(record.get("time") or ""), (file_index[path], number), record))
    return result


def sheets_for(notebooks: list[str], instructor: dict[str, Path], students: list[StudentFile]
               ) -> dict[str, list[Exercise]]:
    """Each notebook's columns: the instructor notebook's exercise sheet; for a notebook without one, the checks the
    students ran in it, in the order first seen."""
    points = {name: spec.points for name, spec in specs().items()}
    sheets: dict[str, list[Exercise]] = {}
    for notebook in notebooks:
        if notebook in instructor:
            sheets[notebook] = exercise_sheet(nbformat.read(instructor[notebook], as_version=4), points)
        else:
            seen = dict.fromkeys(r.check for s in students for r in s.records if r.notebook == notebook)
            sheets[notebook] = [Exercise(name, "", column=name) for name in seen]
    return sheets


def score_row(student: StudentFile, notebook: str, sheet: list[Exercise]) -> Submission:
    """One CSV row: the latest record per check of the sheet; a check never run scores 0 and the status names it."""
    latest: dict[str, Record] = {}
    for record in sorted((r for r in student.records if r.notebook == notebook), key=lambda r: (r.time, r.order)):
        latest[record.check] = record
    results, flags, not_run = [], [], []
    for exercise in sheet:
        points = specs()[exercise.check].points
        record = latest.get(exercise.check)
        if record is None:
            not_run.append(exercise.column)
            results.append({"score": 0.0, "points": points, "outcome": "not run"})
            continue
        passed = record.outcome == "passed"
        results.append({"score": points if passed else 0.0, "points": points, "outcome": record.outcome})
        claimed = record.raw.get("score")
        if record.points_claimed != points or claimed != (points if passed else 0.0):
            flags.append(f"{exercise.column}: the record claims {claimed!r} of {record.points_claimed!r} points "
                         f"({record.outcome}); the check is worth {points:g}")
    if student.problems:
        flags.append(f"{len(student.problems)} line(s) skipped (see stderr)")
    if len(not_run) == len(sheet):
        status = NEVER_RAN
    elif not_run:
        status = "not run: " + ", ".join(not_run)
    else:
        status = "ok"
    return Submission(student.student, student.paths[0], notebook, status, "", exercises=list(sheet),
                      results=results, flags=flags)


def collect(paths: list[Path], instructor: dict[str, Path], only: list[str] | None = None
            ) -> tuple[list[Submission], list[str]]:
    """The rows (student by student, notebooks in course order) and every problem line, from results files."""
    files = find_results(paths)
    file_index = {path: index for index, path in enumerate(files)}
    by_student: dict[str, list[Path]] = {}
    for path, student in zip(files, student_ids(files)):
        by_student.setdefault(student, []).append(path)
    students = [read_student(student, ps, file_index, instructor) for student, ps in by_student.items()]
    if only:
        notebooks = [name for name in (notebook_name(n, instructor) for n in only) if name]
    else:
        ran = {r.notebook for s in students for r in s.records}
        notebooks = [name for name in instructor if name in ran] + sorted(ran - set(instructor))
    sheets = sheets_for(notebooks, instructor, students)
    rows = [score_row(student, notebook, sheets[notebook]) for student in students for notebook in notebooks]
    if not notebooks:  # nobody ran anything: one row per student says so
        rows = [Submission(s.student, s.paths[0], "", NEVER_RAN, "",
                           flags=[f"{len(s.problems)} line(s) skipped (see stderr)"] if s.problems else [])
                for s in students]
    return rows, [problem for student in students for problem in student.problems]


def _instructor_notebooks(path: Path) -> dict[str, Path]:
    """File name -> instructor notebook; an empty dict when there are none (the columns then come from the files)."""
    if path.is_file():
        return {path.name: path}
    return {p.name: p for p in sorted(path.glob("*.ipynb"))} if path.is_dir() else {}


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 when the CSV was written (lines skipped are reported on stderr), 2 on a usage error."""
    parser = argparse.ArgumentParser(prog="bash scripts/course.sh scores", description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results files (JSONL), or folders holding *.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="the CSV: a row per student and notebook")
    parser.add_argument("--instructor", type=Path, default=Path("notebooks"),
                        help="instructor notebooks, for the exercise sheets (default: notebooks/)")
    parser.add_argument("--notebook", action="append", help="only this notebook (repeatable), e.g. 02_bert")
    options = parser.parse_args(argv)
    try:
        rows, problems = collect(options.results, _instructor_notebooks(options.instructor), options.notebook)
    except (ValueError, OSError) as exc:
        print(f"scores: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"scores: skipped {problem}", file=sys.stderr)
    write_csv(options.out, rows)
    print(f"wrote {options.out}: {len({r.student for r in rows})} student(s), {len(rows)} row(s)"
          + (f", {len(problems)} line(s) skipped" if problems else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
