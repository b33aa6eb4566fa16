#!/usr/bin/env python3
"""How the instructor's own solution scores on the re-grade's draws: the figures a threshold is set from.

    python benchmarks/grading_thresholds.py                         # every graded training exercise, 20 draws
    python benchmarks/grading_thresholds.py --notebooks 05 --draws 5   # notebook 05 only, 5 draws
    python benchmarks/grading_thresholds.py --notebooks 00 --first-seed 20251207

For each graded fine-tuning exercise of the instructor notebooks (``check.fine_tuning``, ``check.lm_fine_tuning``)
the reference solution is rebuilt from the notebook (:func:`course_lib.grading.regrade.reference.reference_functions`)
and graded exactly as the re-grade grades it, with the notebook's literal arguments and ``seed`` = each draw: the
seed draws the labelled sample (or the training messages), the batch order and the new head. One line per draw, then
per metric the min / mean / max, the threshold, the margin of the worst draw and the pass count. A threshold is fair
when the worst of at least 20 draws clears it with a stated margin (docs/instructors.md). Minutes per draw on a
2-core CPU (the LM task about 1, the classifiers 1 to 3).

Every draw is also recorded in ``benchmarks/results/threshold_draws.json`` (``--save``), one entry per exercise,
replaced when the exercise is measured again; ``tests/grading/test_threshold_draws.py`` checks each shipped
threshold against the worst recorded draw.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import platform
import re
import os
import statistics
import sys
import time
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.grading.fine_tuning.draws import RECORD  # noqa: E402
from course_lib.grading.regrade.reference import reference_functions  # noqa: E402
from course_lib.grading.regrade.sheet import exercise_sheet, parse_cell  # noqa: E402
from course_lib.grading.runtime.registry import grade, specs  # noqa: E402

GRADED_TRAINING = ("fine_tuning", "lm_fine_tuning")
# metric: (pattern in the check's report, the keyword argument holding its threshold, True when higher is better)
METRICS = {"accuracy": (r"accuracy\s+([0-9.]+)", "min_accuracy", True),
           "spam F1": (r"spam F1\s+([0-9.]+)", "min_f1", True),
           "held-out nats": (r"held-out\s+([0-9.]+)", "max_loss", False),
           "epochs": (r"([0-9.]+) epochs of", "max_epochs", False)}


def figures(text: str) -> dict[str, float]:
    """The metrics a check's message and details report."""
    return {name: float(match.group(1)) for name, (pattern, _, _) in METRICS.items()
            if (match := re.search(pattern, text))}


SAVE = RECORD  # what the notebooks read back (course_lib.grading.fine_tuning.draws)


def entry_key(notebook: str, exercise) -> str:
    """``05_gpt2:lm_fine_tuning:gpt2-sms-lm``: one entry per notebook, check and task."""
    return f"{notebook}:{exercise.check}:{exercise.kwargs.get('task', '')}"


def solution_digest(notebook: nbformat.NotebookNode, exercise) -> str:
    """sha256 of the reference solution's code (its ``def``, read with ``ast``: comments and layout do not count).

    Recorded with the draws, so a test can tell when the recipe changed after its thresholds were measured.
    """
    tree = parse_cell(notebook.cells[exercise.cell].source)
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                 and node.name in exercise.functions]
    return hashlib.sha256("\n".join(ast.dump(node) for node in functions).encode()).hexdigest()


def save(path: Path, key: str, entry: dict) -> None:
    """Write ``entry`` under ``key`` in the JSON file at ``path``, keeping the other exercises' entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[key] = entry
    path.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")


def shipped_exercises() -> dict[str, object]:
    """``{entry key: exercise}`` for every graded training exercise of the shipped notebooks, as written now."""
    points = {name: spec.points for name, spec in specs().items()}
    found = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for exercise in exercise_sheet(nbformat.read(path, as_version=4), points):
            if exercise.check in GRADED_TRAINING and exercise.problem is None:
                found[entry_key(path.stem, exercise)] = exercise
    return found


def clears(row: dict, kwargs: dict) -> bool:
    """Whether one recorded draw meets every threshold in ``kwargs``."""
    for name, (_, argument, higher) in METRICS.items():
        if name in row and argument in kwargs and (row[name] < kwargs[argument] if higher else row[name] > kwargs[argument]):
            return False
    return True


def table(path: Path) -> str:
    """The recorded draws against the thresholds the notebooks ship now, as the Markdown table of docs/instructors.md."""
    lines = ["| exercise | draws | metric | min | mean | max | threshold | worst draw's margin | passed |",
             "|---|---|---|---|---|---|---|---|---|"]
    shipped = shipped_exercises()
    for key, entry in json.loads(path.read_text()).items():
        kwargs = shipped[key].kwargs if key in shipped else entry["kwargs"]
        draws, first = entry["draws"], True
        passed = sum(clears(row, kwargs) for row in draws)
        for name, (_, argument, higher) in METRICS.items():
            values = [row[name] for row in draws if name in row]
            if not values or argument not in kwargs:
                continue
            threshold = kwargs[argument]
            margin = (min(values) - threshold) if higher else (threshold - max(values))
            seeds = [row["seed"] for row in draws]
            head = (f"| {entry['notebook'][:2]} `{entry['check']}` ({entry['kwargs'].get('task', '')}) | {len(draws)} "
                    f"(seeds {min(seeds)}-{max(seeds)}) |" if first else "| | |")
            lines.append(f"{head} {name} | {min(values):.4f} | {statistics.mean(values):.4f} | {max(values):.4f} | "
                         f"{'>=' if higher else '<='} {threshold:g} | {margin:+.4f} | "
                         + (f"{passed} / {len(draws)} |" if first else "|"))
            first = False
    return "\n".join(lines)


def run(path: Path, exercise, seeds: list[int], save_to: Path | None = None) -> None:
    function = reference_functions(path, exercise)
    print(f"\n{path.name}: check.{exercise.check}({exercise.function}, "
          + ", ".join(f"{k}={v!r}" for k, v in exercise.kwargs.items()) + ")", flush=True)
    rows, passed = [], 0
    for seed in seeds:
        start = time.perf_counter()
        result = grade(exercise.check, *function, **exercise.kwargs, seed=seed)
        found = figures("\n".join([result.message, *result.details]))
        rows.append(found | {"seed": seed, "outcome": result.outcome.value,
                             "seconds": round(time.perf_counter() - start, 1)})
        passed += result.passed
        print(f"  seed {seed:>9}  {result.outcome.value:<9} " + "  ".join(f"{k} {v:.4f}" for k, v in found.items())
              + f"   ({time.perf_counter() - start:.0f} s)" + ("" if result.passed else f"  {result.message}"),
              flush=True)
    for name, (_, argument, higher) in METRICS.items():
        values = [row[name] for row in rows if name in row]
        if not values or argument not in exercise.kwargs:
            continue
        threshold, worst = exercise.kwargs[argument], (min(values) if higher else max(values))
        margin = worst - threshold if higher else threshold - worst
        print(f"  {name:<14} min {min(values):.4f}  mean {statistics.mean(values):.4f}  max {max(values):.4f}   "
              f"threshold {threshold:g} ({argument}); worst draw clears it by {margin:+.4f}")
    print(f"  passed {passed} / {len(seeds)} draws", flush=True)
    if save_to is not None:
        save(save_to, entry_key(path.stem, exercise), {
            "notebook": path.name, "check": exercise.check, "function": exercise.function,
            "solution_sha256": solution_digest(nbformat.read(path, as_version=4), exercise),
            "kwargs": exercise.kwargs, "draws": rows,
            "measured": datetime.date.today().isoformat(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", nargs="*", default=[], help="notebook prefixes (00 05); default: all")
    parser.add_argument("--draws", type=int, default=20, help="draws per exercise (default 20)")
    parser.add_argument("--first-seed", type=int, default=1000, help="the first draw's seed (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--save", type=Path, default=SAVE, help=f"record the draws here (default {SAVE.relative_to(ROOT)})")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--table", action="store_true", help="print the recorded draws as a Markdown table, run nothing")
    options = parser.parse_args()
    if options.table:
        print(table(options.save))
        return
    torch.set_num_threads(options.threads)
    seeds = list(range(options.first_seed, options.first_seed + options.draws))
    for key, exercise in shipped_exercises().items():
        notebook = key.split(":")[0]
        if not options.notebooks or notebook.startswith(tuple(options.notebooks)):
            run(ROOT / "notebooks" / f"{notebook}.ipynb", exercise, seeds, None if options.no_save else options.save)


if __name__ == "__main__":
    main()
