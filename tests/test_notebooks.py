"""Student versions of the notebooks: released, run top to bottom, every check "not attempted".

Instructor notebooks are tested separately by nbval (``pytest --nbval-lax notebooks/`` with ``COURSE_STRICT=1``).
Here each ``notebooks/*.ipynb`` is released to a temporary directory and executed with nbclient. Allowed errors:
``NotImplementedError`` in cells tagged ``raises-exception`` (the release tool tags cells holding a solution or tagged
``exercise``). Every check the notebook calls must report "not attempted" in the COURSE_RESULTS file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_lib.grading.runtime.registry import _RESERVED
from course_lib.publishing.release import RAISES_TAG, release_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: generous, the default path of a notebook runs in about two minutes
_NOT_CHECKS = set(_RESERVED)  # check.summary(), check.sheet(...), ...: the CheckBook's own methods, not checks


def run_student_version(instructor: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Release ``instructor``, execute it (cwd: the instructor's folder), return (executed notebook, check records)."""
    student = release_notebook(nbformat.read(instructor, as_version=4), instructor.name)
    results = workdir / f"{instructor.stem}.results.jsonl"
    monkeypatch.setenv("COURSE_STRICT", "0")
    monkeypatch.setenv("COURSE_RESULTS", str(results))
    monkeypatch.setenv("COURSE_NOTEBOOK", instructor.name)
    client = NotebookClient(student, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(instructor.parent)}})
    client.execute()
    nbformat.write(student, workdir / instructor.name)  # kept in pytest's tmp dir for a look after a failure
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return student, [record for record in records if record["kind"] == "check"]


def problems(student: nbformat.NotebookNode, records: list[dict]) -> list[str]:
    """What is wrong with an executed student notebook (an empty list when nothing is)."""
    found = []
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type != "error":
                continue
            allowed = output.ename == "NotImplementedError" and RAISES_TAG in cell.metadata.get("tags", [])
            if not allowed:
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                found.append(f"cell {index} ({first_line!r}) raised {output.ename}: {output.evalue}")
    sources = "\n".join(cell.source for cell in student.cells if cell.cell_type == "code")
    called = set(re.findall(r"\bcheck\.(\w+)\(", sources)) - _NOT_CHECKS
    reported = {record["check"] for record in records}
    if called - reported:
        found.append(f"checks called but never reported: {sorted(called - reported)}")
    found += [f"check {r['check']} reported {r['outcome']!r}, expected 'not_attempted': {r['message']}"
              for r in records if r["outcome"] != "not_attempted"]
    return found


@pytest.mark.parametrize("notebook", [pytest.param(path, id=path.stem) for path in NOTEBOOKS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no notebooks in notebooks/ yet: no student version to run"))])
def test_student_notebook_runs_and_every_check_is_not_attempted(notebook, tmp_path, monkeypatch):
    student, records = run_student_version(notebook, tmp_path, monkeypatch)
    assert problems(student, records) == []


# --- the harness itself, on a tiny instructor notebook built here --------------------------------------------------

SOLUTION = '''import math
from course_lib.grading import check

def scaled_dot_product_attention(query, key, value, mask=None):
    """softmax(Q K^T / sqrt(d_k) + mask) V (Vaswani et al. 2017, Eq. 1)."""
    ### BEGIN SOLUTION
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    return weights @ value, weights
    ### END SOLUTION'''


def tiny_notebook(path: Path) -> Path:
    """An instructor notebook with one exercise, its check, a direct call (tagged) and narrative after it."""
    cells = [nbformat.v4.new_markdown_cell("# Tiny"), nbformat.v4.new_code_cell(SOLUTION),
             nbformat.v4.new_code_cell("check.scaled_dot_product_attention(scaled_dot_product_attention)"),
             nbformat.v4.new_code_cell("import torch\nx = torch.ones(1, 2, 4)\n"
                                       "scaled_dot_product_attention(x, x, x)[1].shape"),
             nbformat.v4.new_code_cell("print('narrative goes on with the library')\ncheck.summary()")]
    cells[3].metadata["tags"] = ["exercise"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_harness_accepts_a_correct_release_and_instructor_passes_strict(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    instructor = tiny_notebook(tmp_path / "notebooks" / "tiny.ipynb")
    student, records = run_student_version(instructor, tmp_path, monkeypatch)
    assert problems(student, records) == []
    assert [(r["check"], r["outcome"], r["notebook"]) for r in records] == [
        ("scaled_dot_product_attention", "not_attempted", "tiny.ipynb")]
    assert student.cells[3].outputs[0].ename == "NotImplementedError"
    assert "NOT ATTEMPTED" in student.cells[2].outputs[0].data["text/html"]

    monkeypatch.setenv("COURSE_STRICT", "1")  # the instructor version passes its check in strict mode
    executed = nbformat.read(instructor, as_version=4)
    NotebookClient(executed, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert executed.cells[2].outputs[0].data["text/plain"].startswith("[PASSED] Scaled dot-product attention")
    assert executed.cells[4].outputs[-1].data["text/plain"].startswith("Score: 1 / 1")


def test_harness_flags_what_is_wrong():
    student = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("check.mlm_masking(mask_tokens)"),
        nbformat.v4.new_code_cell("mask_tokens(x)"), nbformat.v4.new_code_cell("later(y)")])
    student.cells[1].outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[])]
    student.cells[2].outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="y", traceback=[])]
    assert problems(student, []) == [
        "cell 1 ('mask_tokens(x)') raised NotImplementedError: ",  # not tagged raises-exception
        "cell 2 ('later(y)') raised NameError: y",
        "checks called but never reported: ['mlm_masking']"]
    passed = [{"check": "mlm_masking", "outcome": "passed", "message": "ok"}]
    assert problems(nbformat.v4.new_notebook(cells=student.cells[:1]), passed) == [
        "check mlm_masking reported 'passed', expected 'not_attempted': ok"]


def test_sanitize_file_masks_ids_addresses_timings_and_bars():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((Path(__file__).parent / "nbval_sanitize.cfg").read_text())
    assert len(patterns) == 6

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert sanitize('<div id="bertviz-0123456789abcdef0123456789abcdef">') == '<div id="bertviz-ID">'
    assert sanitize("<function f at 0x7f3a2c1b4d90>") == "<function f at 0xADDRESS>"
    assert sanitize("cached 12.3 s, recomputed 512 ms") == "cached DURATION, recomputed DURATION"
    assert sanitize(" 45%|████▌     | 9/20 [00:01<00:02,  5.12it/s]") == " TQDM-BAR"
    assert sanitize("1234.5 tokens/s at 10:42:07") == "RATE at CLOCK"
    unchanged = "[PASSED] shape [2, 3, 5], accuracy 0.9874, 12 sentences, 3 samples, Score: 1 / 1"
    assert sanitize(unchanged) == unchanged
