"""`course.sh scores`: the students' own results files (COURSE_RESULTS) become one CSV in the re-grade's format.

The files are generated with the writer the notebooks use (registry._append_record of CheckResult/Summary records).
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.grading.reports import scores
from course_lib.grading.runtime import registry
from course_lib.grading.regrade.report import Submission, write_csv
from course_lib.grading.runtime.result import CheckResult, Outcome, Summary

ROOT = Path(__file__).resolve().parents[3]
INSTRUCTOR = ROOT / "notebooks"
BERT, TRANSFER = "02_bert.ipynb", "00_transfer_learning.ipynb"


def write_results(path: Path, monkeypatch, runs: list[tuple[str, str, Outcome]], summary: bool = False) -> None:
    """Append what a student's kernel appends: one record per (notebook as Jupyter names it, check, outcome)."""
    monkeypatch.setenv("COURSE_RESULTS", str(path))
    monkeypatch.delenv("COURSE_NOTEBOOK", raising=False)
    for notebook, name, outcome in runs:
        monkeypatch.setenv("JPY_SESSION_NAME", notebook)
        result = CheckResult(name, registry.specs()[name].title, outcome, "message")
        registry._append_record(result.to_record())
    if summary:
        registry._append_record(Summary([]).to_record(), "02_bert")
    path.touch()


@pytest.fixture
def class_files(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    folder.mkdir()
    # alice: fails then passes the masking (latest wins), passes fine-tuning, and ran one check of notebook 00,
    # from a copy of the notebook with her name in it; her file also holds a summary and two bad lines.
    write_results(folder / "alice.jsonl", monkeypatch, [
        ("/home/alice/course/notebooks/02_bert.ipynb", "mlm_masking", Outcome.FAILED),
        ("/home/alice/course/notebooks/02_bert.ipynb", "mlm_masking", Outcome.PASSED),
        ("02_bert.ipynb", "fine_tuning", Outcome.PASSED),
        ("alice_00_transfer_learning-Copy1.ipynb", "slanted_triangular_lr", Outcome.PASSED),
    ], summary=True)
    with open(folder / "alice.jsonl", "a") as file:
        file.write('{"notebook": "02_bert", "check": "mlm_masking", "outcome": "pass\n')   # cut off mid-line
        file.write(json.dumps({"notebook": "02_bert", "check": "no_such_check", "outcome": "passed"}) + "\n")
    # bob: passes the masking, then breaks it (latest wins: 0); never runs fine-tuning nor notebook 00.
    write_results(folder / "bob.jsonl", monkeypatch, [
        ("02_bert.ipynb", "mlm_masking", Outcome.PASSED),
        ("02_bert.ipynb", "mlm_masking", Outcome.ERROR),
    ])
    # carol: opened nothing; her file is empty.
    (folder / "carol.jsonl").write_text("")
    # dave: edited his file to claim 5 points; and a record whose time is earlier though it comes later in the file.
    with open(folder / "dave.jsonl", "w") as file:
        for time, outcome, score, points in [("2026-01-02T10:00:00+00:00", "passed", 5, 5),
                                             ("2026-01-01T10:00:00+00:00", "failed", 0.0, 1.0)]:
            file.write(json.dumps({"notebook": "02_bert", "session": "x", "time": time, "kind": "check",
                                   "check": "mlm_masking", "outcome": outcome, "score": score,
                                   "points": points}) + "\n")
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_one_row_per_student_and_notebook_latest_record_wins(class_files, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert scores.main([str(class_files), "--out", str(out), "--instructor", str(INSTRUCTOR)]) == 0
    rows = read_csv(out)
    table = {(r["student"], r["notebook"]): r for r in rows}
    assert [(r["student"], r["notebook"]) for r in rows] == [
        (student, notebook) for student in ("alice", "bob", "carol", "dave") for notebook in (TRANSFER, BERT)]

    alice = table["alice", BERT]
    assert (alice["status"], alice["mlm_masking"], alice["fine_tuning"], alice["total"], alice["max"]) == \
        ("ok", "1", "1", "2", "2")
    assert alice["flags"] == "2 line(s) skipped (see stderr)"
    alice00 = table["alice", TRANSFER]
    assert alice00["slanted_triangular_lr"] == "1" and alice00["discriminative_lr_groups"] == "0"
    assert alice00["status"] == "not run: discriminative_lr_groups, fine_tuning"
    assert (alice00["total"], alice00["max"]) == ("1", "3")

    bob = table["bob", BERT]
    assert (bob["status"], bob["mlm_masking"], bob["fine_tuning"], bob["total"], bob["max"]) == \
        ("not run: fine_tuning", "0", "0", "0", "2")
    assert table["bob", TRANSFER]["status"] == scores.NEVER_RAN

    for notebook, points in ((TRANSFER, "3"), (BERT, "2")):   # a student who never ran a check still has rows
        carol = table["carol", notebook]
        assert (carol["status"], carol["total"], carol["max"], carol["flags"]) == (scores.NEVER_RAN, "0", points, "")

    dave = table["dave", BERT]   # the later time wins, whatever the line order; edited points are flagged, not paid
    assert (dave["mlm_masking"], dave["total"]) == ("1", "1")
    assert "mlm_masking: the record claims 5 of 5 points (passed); the check is worth 1" in dave["flags"]

    err = capsys.readouterr().err
    assert "alice.jsonl:6: not a JSON line" in err and "alice.jsonl:7: unknown check 'no_such_check'" in err
    assert err.count("scores: skipped") == 2


def test_the_csv_has_the_regrades_format(class_files, tmp_path):
    """Same header and cell format as regrade.report.write_csv for the same sheet."""
    out = tmp_path / "scores.csv"
    scores.main([str(class_files / "bob.jsonl"), "--out", str(out), "--instructor", str(INSTRUCTOR)])
    rows, _ = scores.collect([class_files / "bob.jsonl"], {BERT: INSTRUCTOR / BERT})
    reference = tmp_path / "regrade.csv"
    write_csv(reference, [Submission("bob", Path("bob.ipynb"), BERT, "ok", "", exercises=rows[0].exercises,
                                     results=[{"score": 0.0, "points": 1.0}, {"score": 0.0, "points": 1.0}])])
    header = next(csv.reader(open(reference)))
    assert header == ["student", "notebook", "status", "mlm_masking", "fine_tuning", "total", "max", "flags"]
    assert next(csv.reader(open(out))) == header
    assert read_csv(out)[0] | {"status": "ok"} == read_csv(reference)[0]


def test_only_the_notebooks_asked_for(class_files, tmp_path):
    out = tmp_path / "scores.csv"
    scores.main([str(class_files), "--out", str(out), "--instructor", str(INSTRUCTOR), "--notebook", "02_bert"])
    assert {r["notebook"] for r in read_csv(out)} == {BERT}


def test_students_named_by_folder_when_file_names_repeat(tmp_path, monkeypatch):
    for student in ("erin", "frank"):
        (tmp_path / student).mkdir()
        write_results(tmp_path / student / "results.jsonl", monkeypatch, [("02_bert", "mlm_masking", Outcome.PASSED)])
    rows, problems = scores.collect([tmp_path], {BERT: INSTRUCTOR / BERT})
    assert [(r.student, r.status, r.score) for r in rows] == [("erin", "not run: fine_tuning", 1.0),
                                                              ("frank", "not run: fine_tuning", 1.0)]
    assert problems == []


def test_a_notebook_without_instructor_notebook_gets_the_checks_run(tmp_path, monkeypatch):
    write_results(tmp_path / "gina.jsonl", monkeypatch, [("my_practice", "relative_shift", Outcome.FAILED),
                                                        ("my_practice", "memory_update", Outcome.PASSED)])
    rows, _ = scores.collect([tmp_path / "gina.jsonl"], {})
    assert [(r.notebook, [e.column for e in r.exercises], r.score, r.max_score) for r in rows] == [
        ("my_practice.ipynb", ["relative_shift", "memory_update"], 1.0, 2.0)]


def test_usage_errors(tmp_path, capsys):
    assert scores.main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no results file at" in capsys.readouterr().err
    assert scores.main([str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2   # a folder without *.jsonl


def test_command_line_module(class_files, tmp_path):
    """What `bash scripts/course.sh scores ...` runs after the set-up."""
    out = tmp_path / "scores.csv"
    run = subprocess.run([sys.executable, "-m", "course_lib.grading.reports.scores", str(class_files), "--out", str(out),
                          "--instructor", str(INSTRUCTOR)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "4 student(s), 8 row(s), 2 line(s) skipped" in run.stdout
    assert len(read_csv(out)) == 8
