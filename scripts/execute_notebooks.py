#!/usr/bin/env python3
"""Restart & Run All for the course notebooks, as they are committed: executed, with outputs, in order.

    python scripts/execute_notebooks.py                      # every notebook in notebooks/
    python scripts/execute_notebooks.py notebooks/00_*.ipynb

Each notebook runs in a fresh kernel from the notebooks/ folder with strict grading (COURSE_STRICT=1), so a reference
solution that fails its check stops the run. Progress-bar widgets (tqdm) are dropped from the stored outputs: they are
only meaningful while a cell runs, and on GitHub they would show a frozen "0%".
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


def is_progress_bar(output) -> bool:
    """A tqdm.auto widget output: a widget whose plain-text fallback is a bar such as ``name:  0%|   | 0/26``."""
    data = output.get("data", {})
    return WIDGET in data and re.search(r"\d+%\|", data.get("text/plain", "")) is not None


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ["COURSE_STRICT"] = "1"
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if not is_progress_bar(o)]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
            cell.metadata.pop("execution", None)  # per-cell timestamps: noise in every diff
    nb.metadata.pop("widgets", None)  # the dropped bars' state; notebooks that keep live widgets re-run them
    nbformat.write(nb, path)
    print(f"{path.relative_to(ROOT)}: executed, {dropped} progress bars dropped")


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for notebook in paths:
        execute(notebook)
