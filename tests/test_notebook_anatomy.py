"""Every course notebook follows the anatomy of DESIGN.md, and is committed executed, in order, and small."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_anatomy(path):
    all_cells = cells(path)
    first = source(all_cells[0])
    assert all_cells[0]["cell_type"] == "markdown" and first.startswith("# "), "starts with a title"
    assert "colab-badge" in first and f"notebooks/{path.name}" in first, "an Open-in-Colab badge for this notebook"
    assert "learn" in first.lower(), "learning goals"
    code = [source(c) for c in all_cells if c["cell_type"] == "code"]
    assert "setup(" in code[0], "the first code cell is the setup cell"
    assert any("check.summary()" in c for c in code), "the exercises end with the score"
    text = "\n".join(source(c) for c in all_cells if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Reading list" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_executed_in_order_and_small(path):
    counts = [c.get("execution_count") for c in cells(path) if c["cell_type"] == "code" and source(c).strip()]
    assert None not in counts, "every code cell was executed (Restart & Run All before committing)"
    assert counts == list(range(1, len(counts) + 1)), "executed top to bottom in one fresh kernel"
    assert path.stat().st_size < 3_000_000, "keep stored outputs small"
    assert not re.search(r"/(work|tmp|root|home)/[A-Za-z0-9_.-]+", "".join(source(c) for c in cells(path)))
