"""The notebook benchmark reads the CPU threads each notebook's setup cell chose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_notebooks", ROOT / "benchmarks" / "bench_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(text: str | None):
    cell = nbformat.v4.new_code_cell("rt = setup(seed=0)")
    if text is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# x"), cell])


def test_setup_threads_reads_the_setup_line():
    bench = _bench()
    two = ("course_lib 0.1.0 | torch 2.13.0+cpu | cpu, 2 threads (0.0 of 2 cores busy elsewhere; COURSE_THREADS=N "
           "overrides) | seed 0")
    one = "course_lib 0.1.0 | torch 2.13.0+cpu | cpu, 1 thread (COURSE_THREADS) | seed 0 | scale 1 (COURSE_SCALE)"
    assert bench.setup_threads(_notebook(two)) == 2
    assert bench.setup_threads(_notebook(one)) == 1
    assert bench.setup_threads(_notebook("training: 3 threads of thought")) is None
    assert bench.setup_threads(_notebook(None)) is None
