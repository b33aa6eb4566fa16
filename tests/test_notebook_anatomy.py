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


# --- the review of notebooks 00 and 02 (issue 13), made into rules so its kinds of mistake cannot come back -------

def markdown(path):
    return "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_markdown_hidden_in_code_cells(path):
    """A heading commented out inside a code cell (``# ## 3. ...``) never renders: the section silently vanishes."""
    hidden = [i for i, c in enumerate(cells(path))
              if c["cell_type"] == "code" and re.search(r"^#\s*#{1,4}\s+\S", source(c), re.M)]
    assert hidden == [], f"cells {hidden} hold a commented-out markdown heading: put it in a markdown cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_kernelspec_is_ipykernels(path):
    """JupyterLab marks a notebook modified on opening when its stored kernelspec differs from the installed one."""
    kernelspec = json.loads(path.read_text())["metadata"].get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("display_name") == "Python 3 (ipykernel)"


# Numbers that look measured (0.xxx: an F1, an accuracy, a cosine) must be printed from the variables that hold them,
# so prose and results cannot drift apart. A paper's number is quoted with its source, e.g. "74.7 (Table 5)".
MEASURED_LOOKING = re.compile(r"(?<![\w.])0\.\d{3}(?!\d)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_prose_types_no_measured_numbers(path):
    typed = sorted(set(MEASURED_LOOKING.findall(markdown(path))))
    assert typed == [], f"markdown states measured-looking numbers {typed}: print them from variables (f-strings)"


def png_width(encoded: str) -> int:
    """Width in pixels of a base64 PNG (from its IHDR chunk)."""
    import base64
    import struct

    return struct.unpack(">I", base64.b64decode(encoded[:64])[16:20])[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_figures_read_at_about_960_px(path):
    """A wide figure shrunk to the page is unreadable: split panels instead (at most ~1200 px stored)."""
    wide = [(i, png_width(output["data"]["image/png"])) for i, c in enumerate(cells(path)) if c["cell_type"] == "code"
            for output in c.get("outputs", []) if "image/png" in output.get("data", {})]
    assert [(i, width) for i, width in wide if width > 1200] == []


VIEW_CALL = re.compile(r"^\s*(?:\w+\s*=\s*)?(head_view|model_view|neuron_view|AttentionExplorer)\(", re.M)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_stored_view_reads_without_a_kernel(path):
    """A bertviz view or explorer shown by a cell stores a picture with its hint; no stored output is a bare widget.

    The browser test proves the mechanism on a demo notebook in a real JupyterLab; this checks every shipped notebook.
    """
    for index, cell in enumerate(cells(path)):
        if cell["cell_type"] != "code":
            continue
        outputs = [output.get("data", {}) for output in cell.get("outputs", [])]
        assert not any(WIDGET_VIEW in data for data in outputs), f"cell {index}: a stored widget view never renders"
        for data in outputs:
            html = "".join(data.get("text/html", ""))
            if "<script" in html:
                assert "course-viz-fallback" in html, f"cell {index}: a script view without its static picture"
        for call in VIEW_CALL.findall(source(cell)):
            pictures = ["".join(data.get("text/html", "")) for data in outputs]
            assert any('class="course-viz-fallback"' in html and "<img" in html for html in pictures), \
                f"cell {index}: {call}(...) stores no picture for a reader without a kernel"
            assert any(re.search(r"run (this cell|the cells above)|trust the notebook", html, re.I)
                       for html in pictures), f"cell {index}: {call}(...) stores no hint on how to make it live"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_two_adjacent_outputs_of_one_stream(path):
    """JupyterLab merges them when it saves (e.g. after "Trust Notebook"): stored merged, reopening changes nothing."""
    for index, cell in enumerate(cells(path)):
        outputs = cell.get("outputs", [])
        for before, after in zip(outputs, outputs[1:]):
            assert not (before["output_type"] == after["output_type"] == "stream" and
                        before["name"] == after["name"]), f"cell {index}: two adjacent {before['name']} outputs"


def test_storing_merges_adjacent_streams_and_keeps_the_rest_in_order():
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOKS[0].parents[1] / "scripts" /
                                                  "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = lambda name, text: {"output_type": "stream", "name": name, "text": text}  # noqa: E731
    picture = {"output_type": "display_data", "data": {"image/png": "..."}, "metadata": {}}
    merged = module.merge_streams([out("stdout", "a\n"), out("stdout", "b\n"), out("stderr", "w\n"), picture,
                                   out("stdout", "c\n"), out("stdout", "d")])
    assert merged == [out("stdout", "a\nb\n"), out("stderr", "w\n"), picture, out("stdout", "c\nd")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_heading_starts_its_cell(path):
    """A heading mid-cell is missing from JupyterLab's table of contents and the site's navigation."""
    for index, cell in enumerate(cells(path)):
        if cell["cell_type"] != "markdown":
            continue
        lines = source(cell).splitlines()
        buried = [line for line in lines[1:] if re.match(r"#{1,6} ", line)]
        assert not buried, f"cell {index}: the heading {buried[0]!r} should start a markdown cell of its own"
