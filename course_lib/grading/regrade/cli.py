"""Re-grade submitted notebooks where the notebook cannot reach the grader: ``bash scripts/course.sh regrade ...``.

    bash scripts/course.sh regrade submissions/ --out scores.csv --json results.json --seed 20250101

For each submitted notebook (a file, or every ``*.ipynb`` under a folder):

1. the exercise sheet comes from the INSTRUCTOR notebook of the same name (``--instructor``, default
   ``notebooks/``): each ``def`` holding ``### BEGIN SOLUTION`` and the ``check.<name>(function, **literals)`` that
   grades it (:mod:`sheet`);
2. the submission runs headless in a fresh kernel with a limit per cell and per notebook, and its exercise functions
   are exported with cloudpickle (:mod:`execute`); a notebook that loops, exits or crashes its kernel is
   reported and the run goes on;
3. each exercise is graded in a fresh process (:mod:`worker`) by the registered check, called with the
   instructor's keyword arguments and the re-grade's ``--seed`` (fresh inputs; for fine-tuning, a labelled sample the
   notebook never trained on). What the notebook's own checks printed or recorded is ignored. A fine-tuning
   exercise trains in that process, which saves the weights it scored; a fresh process that never loads student code
   scores them (on ``--heldout FILE``, else on the shipped test split), and the training process's CPU time, counted
   by the operating system, is held to a budget calibrated with the reference solution on this machine
   (:mod:`boundary`).

The student's id is the submission's file name, or its folder's name when several submissions share a file name.
This runs the students' code: run it in a container or a throw-away account (docs/instructors.md).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

from course_lib.grading.regrade.boundary import calibrate
from course_lib.grading.regrade.grade import FINE_TUNING_CHECKS, regrade_one
from course_lib.grading.regrade.report import Submission, write_csv, write_json, write_json_dir
from course_lib.grading.regrade.scoring import SHIPPED, read_heldout
from course_lib.grading.regrade.sheet import Exercise, exercise_sheet
from course_lib.grading.runtime.registry import specs
from course_lib.paths import DataFileError, data_dir


def find_submissions(paths: list[Path]) -> list[Path]:
    """The notebooks named, and every ``*.ipynb`` under the folders named (checkpoints skipped), in order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"no submission at {path}")
    if not found:
        raise ValueError(f"no notebooks in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(p.resolve() for p in found))


def student_ids(paths: list[Path]) -> list[str]:
    """The file name's stem; the parent folder's name where file names repeat; the path where both do."""
    ids = []
    for path in paths:
        if sum(p.name == path.name for p in paths) == 1:
            ids.append(path.stem)
        elif sum(p.name == path.name and p.parent.name == path.parent.name for p in paths) == 1:
            ids.append(path.parent.name)
        else:
            ids.append("/".join(path.parts[-3:-1]))
    return ids


def match_instructor(submission: Path, instructor: dict[str, Path]) -> Path | None:
    """The instructor notebook of the same file name, else the longest name contained in the submission's name."""
    if submission.name in instructor:
        return instructor[submission.name]
    contained = [name for name in instructor if Path(name).stem in submission.stem]
    return instructor[max(contained, key=len)] if contained else None


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 when every submission was graded (whatever the scores), 2 on a usage error, 3 when a submission
    changed the grader's files (the run stops there)."""
    parser = argparse.ArgumentParser(prog="bash scripts/course.sh regrade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="student notebooks, or folders holding them")
    parser.add_argument("--out", type=Path, required=True, help="the CSV: a row per submission, a column per check")
    parser.add_argument("--json", type=Path, help="one JSON file with every submission (Gradescope objects)")
    parser.add_argument("--json-dir", type=Path, help="one Gradescope results file per submission")
    parser.add_argument("--instructor", type=Path, default=Path("notebooks"),
                        help="instructor notebooks (a folder or one notebook); default: notebooks/")
    parser.add_argument("--seed", type=int, help="the re-grade's seed (default: drawn, and written to the outputs)")
    parser.add_argument("--cell-timeout", type=float, default=600.0, help="seconds per cell (default 600)")
    parser.add_argument("--notebook-timeout", type=float, default=1800.0, help="seconds per notebook (default 1800)")
    parser.add_argument("--check-timeout", type=float, default=900.0,
                        help="seconds per grader process, a backstop over the check's own limit (default 900)")
    parser.add_argument("--executed", type=Path, help="keep each executed notebook under this folder")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    parser.add_argument("--heldout", type=Path, help="labelled messages the students never had (CSV: label, text): "
                        "the fine-tuning exercises are scored on them instead of the shipped test split")
    options = parser.parse_args(argv)
    for name in ("asyncio", "traitlets"):  # nbclient's own noise after a time-out; the report says what happened
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        for name in ("cell_timeout", "notebook_timeout", "check_timeout", "jobs"):
            if not getattr(options, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(options, name)}")
        instructor = _instructor_notebooks(options.instructor)
        paths = find_submissions(options.submissions)
        if options.heldout is not None:
            options.heldout = options.heldout.resolve()
            read_heldout(options.heldout)  # a bad file stops the run before any student code runs
    except ValueError as exc:
        print(f"regrade: {exc}", file=sys.stderr)
        return 2
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    points = {name: spec.points for name, spec in specs().items()}
    sheets = {path: exercise_sheet(nbformat.read(path, as_version=4), points) for path in instructor.values()}
    watched = _watched_files(list(instructor.values()))
    fingerprint = _fingerprint(watched)  # read before any student code runs: the sheets, the grader, the data
    for path, sheet in sheets.items():  # say it now, not in every student's row: fix the notebook and re-run
        for exercise in sheet:
            if exercise.problem is not None:
                print(f"regrade: WARNING: {path.name}, cell {exercise.cell}: `{exercise.column}` cannot be re-graded "
                      f"and scores 0 for everyone: {exercise.problem}", file=sys.stderr)
    options.calibrations = _calibrate(paths, instructor, sheets, seed, options)
    print(f"re-grading {len(paths)} notebook(s) with seed {seed}, {options.jobs} at a time")
    done: dict[Path, Submission] = {}
    code = 0
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = {pool.submit(_grade, path, student, instructor, sheets, seed, options): path
                   for path, student in zip(paths, student_ids(paths))}
        for future in as_completed(futures):
            submission = done[futures[future]] = future.result()
            print(f"  {submission.student:<24} {submission.notebook:<28} {submission.status:<16} "
                  f"{submission.score:g} / {submission.max_score:g}   ({submission.seconds:.0f} s)", flush=True)
            now = _fingerprint(watched)
            changed = [str(p) for p in sorted(set(now) | set(fingerprint)) if now.get(p) != fingerprint.get(p)]
            if changed:
                print(f"regrade: STOPPED: files of the grader changed while {submission.path} ran: "
                      f"{', '.join(changed[:5])}. Restore the checkout, make it read-only for the re-grade (or use a "
                      "container), and re-run; the outputs hold the submissions graded so far.", file=sys.stderr)
                code = 3
                pool.shutdown(wait=True, cancel_futures=True)
                break
    submissions = [done[path] for path in paths if path in done]
    write_csv(options.out, submissions)
    if options.json:
        write_json(options.json, submissions, seed)
    if options.json_dir:
        write_json_dir(options.json_dir, submissions, seed)
    print(f"wrote {options.out}" + "".join(f", {p}" for p in (options.json, options.json_dir) if p))
    return code


def _grade(path: Path, student: str, instructor: dict[str, Path], sheets: dict[Path, list[Exercise]], seed: int,
           options: argparse.Namespace) -> Submission:
    """One submission, in a temporary folder of its own; a failure of the re-grade itself is that row's status."""
    start = time.monotonic()
    matched = match_instructor(path, instructor)
    if matched is None:
        submission = Submission(student, path, "", "no instructor notebook",
                                f"no instructor notebook matches {path.name} (have: {', '.join(instructor)})")
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="course-regrade-") as workdir:
                submission = regrade_one(path, student, matched.name, sheets[matched], seed, options, Path(workdir))
        except Exception as exc:  # noqa: BLE001 - one submission must not cost the others their grades
            submission = Submission(student, path, matched.name, "re-grade failed", f"{type(exc).__name__}: {exc}")
    submission.seconds = time.monotonic() - start
    return submission


def _calibrate(paths: list[Path], instructor: dict[str, Path], sheets: dict[Path, list[Exercise]], seed: int,
               options: argparse.Namespace) -> dict:
    """The CPU budget of each fine-tuning exercise someone submitted: its reference and a no-op, on this machine."""
    used = {matched for path in paths if (matched := match_instructor(path, instructor)) is not None}
    exercises = [(notebook, e) for notebook in sorted(used) for e in sheets[notebook]
                 if e.check in FINE_TUNING_CHECKS and e.problem is None]
    if exercises:
        where = f"{options.heldout} (held by you)" if options.heldout else SHIPPED
        print(f"fine-tuning exercises: trained in one process, scored in another on {where}")
    calibrations = {}
    for notebook, exercise in exercises:
        with tempfile.TemporaryDirectory(prefix="course-calibrate-") as workdir:
            calibration = calibrate(notebook, exercise, seed, options.check_timeout, Path(workdir))
        reference = calibration.reference
        print(f"  {notebook.name} {exercise.column}: the reference {reference['outcome']} with seed {seed} "
              f"({reference['message'][:120]}); CPU {calibration.overhead:.1f} s to load and score, "
              f"{calibration.per_epoch:.1f} s per epoch", flush=True)
        if reference["outcome"] != "passed":
            print(f"regrade: WARNING: your own solution of {notebook.name} `{exercise.column}` does not pass with "
                  f"seed {seed}: choose another seed or loosen the threshold", file=sys.stderr)
        calibrations[(notebook.name, exercise.column)] = calibration
    return calibrations


def _watched_files(instructor: list[Path]) -> list[Path]:
    """What a submission must not change: the instructor notebooks, course_lib's folder and the data folder."""
    watched = [*instructor, Path(__file__).resolve().parents[1]]  # .../course_lib
    try:
        watched.append(data_dir())
    except DataFileError:
        pass  # no data folder: the fine-tuning checks will say so
    return watched


def _fingerprint(watched: list[Path]) -> dict[Path, str]:
    """sha256 of each watched file and of every file under each watched folder (a new file shows as a new key)."""
    files = [path for root in watched for path in (sorted(root.rglob("*")) if root.is_dir() else [root])
             if "__pycache__" not in path.parts and not path.is_dir()]
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing" for path in files}


def _instructor_notebooks(path: Path) -> dict[str, Path]:
    """File name -> instructor notebook, from a folder or a single notebook."""
    if path.is_file():
        return {path.name: path}
    if path.is_dir() and any(path.glob("*.ipynb")):
        return {p.name: p for p in sorted(path.glob("*.ipynb"))}
    raise ValueError(f"no instructor notebooks at {path}: pass --instructor FOLDER_OR_NOTEBOOK")

