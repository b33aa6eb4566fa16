#!/usr/bin/env python3
"""Wall time and peak memory of each notebook's default path, as the tests run it (targets: ~120 s, < 2 GB).

    python benchmarks/bench_notebooks.py                      # every notebook in notebooks/
    python benchmarks/bench_notebooks.py notebooks/00_*.ipynb --cells   # also the slowest cells
    python benchmarks/bench_notebooks.py --busy-core                   # quiet, then with one core kept busy

``--busy-core`` runs every notebook twice: on the quiet machine, then while another process spins on one core
(what a browser, a video call or Colab's shared vCPUs do to a student's kernel), and prints the ratio; the setup
cell's thread choice should keep it at or below 2.

Every row prints the CPU threads the notebook's setup cell chose (one per core that other programs leave idle
now); ``--threads N`` pins them instead (``COURSE_THREADS``), e.g. to time the one-thread path a student gets while
another program keeps a core busy. A quiet run that starts while something else keeps a core busy says so.

Each notebook runs top to bottom in a fresh kernel (nbclient), in its own process, so that the peak resident memory
of the kernel (getrusage of the reaped children) belongs to that notebook alone. Nothing is written back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.runtime import busy_elsewhere


def run_one(path: Path, show_cells: bool) -> dict:
    """Execute one notebook (in this process) and return its timings; called in a child process."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    cell_times = []
    execute_cell = client.async_execute_cell

    async def timed(cell, index, **kwargs):
        start = time.perf_counter()
        result = await execute_cell(cell, index, **kwargs)
        cell_times.append((time.perf_counter() - start, index, cell.source.splitlines()[0][:70] if cell.source else ""))
        return result

    client.async_execute_cell = timed
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel, reaped at shutdown
    slowest = sorted(cell_times, reverse=True)[:8] if show_cells else []
    return {"notebook": path.name, "seconds": round(seconds, 1), "peak_mb": round(peak_mb),
            "threads": setup_threads(nb), "slowest_cells": [[round(t, 1), i, src] for t, i, src in slowest]}


def setup_threads(nb) -> int | None:
    """The CPU threads the notebook's setup cell chose, read from its printed line ("cpu, 2 threads (...)")."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            found = re.search(r"\| cpu, (\d+) threads? \(", output.get("text", ""))
            if found:
                return int(found.group(1))
    return None


def spin() -> None:
    """Keep one core busy until killed (the --busy-core mode's other program)."""
    while True:
        pass


def time_notebook(path: Path, cells: bool, threads: int | None = None) -> dict:
    """One notebook in a child process: its timings as ``run_one`` returns them."""
    command = [sys.executable, __file__, "--child", str(path)] + (["--cells"] if cells else [])
    env = dict(os.environ, COURSE_THREADS=str(threads)) if threads else None
    completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--cells", action="store_true", help="also list the slowest cells")
    parser.add_argument("--busy-core", action="store_true", help="also time each notebook with one core kept busy")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="pin every run's CPU threads (COURSE_THREADS) instead of the setup cell's choice")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spin:
        spin()
    if args.child:
        print(json.dumps(run_one(args.notebooks[0], args.cells)))
        return 0
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    print(f"{'notebook':<32} {'seconds':>8} {'threads':>7} {'peak MB':>8}"
          + (f" {'busy s':>8} {'threads':>7} {'ratio':>6}" if args.busy_core else ""))
    for path in paths:
        busy = busy_elsewhere(window=1.0)
        if busy is not None and busy >= 0.5:
            print(f"({busy:.1f} cores are busy with other programs: the next quiet run is not quiet)", flush=True)
        row = time_notebook(path, args.cells, args.threads)
        line = f"{row['notebook']:<32} {row['seconds']:>8.1f} {row['threads'] or '?':>7} {row['peak_mb']:>8}"
        if args.busy_core:
            spinner = subprocess.Popen([sys.executable, __file__, "--spin"])
            try:
                time.sleep(3)  # let the spinner start: the setup cell measures the cores busy now
                busy = time_notebook(path, False, args.threads)
            finally:
                spinner.kill()
            line += f" {busy['seconds']:>8.1f} {busy['threads'] or '?':>7} {busy['seconds'] / row['seconds']:>6.2f}"
        print(line, flush=True)
        for seconds, index, source in row["slowest_cells"]:
            print(f"    cell {index:>3} {seconds:6.1f} s  {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
