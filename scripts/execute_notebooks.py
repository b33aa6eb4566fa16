#!/usr/bin/env python3
"""Restart & Run All for the course notebooks, as they are committed: executed, with outputs, in order.

    python scripts/execute_notebooks.py                      # every notebook in notebooks/
    python scripts/execute_notebooks.py notebooks/00_*.ipynb

Each notebook runs in a fresh kernel from its own folder with strict grading (COURSE_STRICT=1), so a reference solution
that fails its check stops the run. Stored outputs are made for a reader without a kernel (GitHub, a fresh clone):

- progress-bar widgets (tqdm) are dropped: only meaningful while a cell runs, stored they show a frozen "0%";
- every other widget keeps only its fallback (e.g. the explorer's picture and hint): a stored widget view can never
  render (its kernel is gone), JupyterLab would show "Error displaying widget: model not found";
- adjacent outputs of one stream (two prints to stdout around a figure-free gap) are merged into one, as nbval
  compares them: JupyterLab merges them itself when it saves (after "Trust Notebook", say), and would otherwise keep
  only part of the text on reopening and mark the notebook modified;
- the kernelspec is ipykernel's own ("Python 3 (ipykernel)"): any other display name makes JupyterLab rewrite it on
  opening and mark the notebook modified.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}  # as ipykernel installs


def is_progress_bar(output) -> bool:
    """A tqdm.auto widget output: a widget whose plain-text fallback is a bar such as ``name:  0%|   | 0/26``."""
    data = output.get("data", {})
    return WIDGET in data and re.search(r"\d+%\|", data.get("text/plain", "")) is not None


def merge_streams(outputs: list) -> list:
    """Adjacent ``stream`` outputs of the same name (stdout or stderr) merged into one, their texts joined in order."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = previous["text"] + output["text"]
            continue
        merged.append(output)
    return merged


def store_for_readers(nb: nbformat.NotebookNode) -> tuple[int, list[int]]:
    """Drop progress bars, strip widget views (keep their fallback); returns (bars dropped, cells of bare widgets)."""
    dropped, bare = 0, []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if is_progress_bar(output):
                dropped += 1
                continue
            data = output.get("data", {})
            if WIDGET in data:
                del data[WIDGET]
                if set(data) <= {"text/plain"}:
                    bare.append(index)  # a reader sees only the widget's repr, e.g. "VBox(children=...)"
            kept.append(output)
        cell.outputs = merge_streams(kept)
        cell.metadata.pop("execution", None)  # per-cell timestamps: noise in every diff
    nb.metadata.pop("widgets", None)  # widget state: nothing stored refers to it any more
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return dropped, bare


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ["COURSE_STRICT"] = "1"
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    dropped, bare = store_for_readers(nb)
    nbformat.write(nb, path)
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"{name}: executed, {dropped} progress bars dropped")
    if bare:
        print(f"{name}: cells {bare} show widgets without a picture; readers without a kernel see only their repr")


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for notebook in paths:
        execute(notebook)
