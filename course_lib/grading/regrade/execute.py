"""Run a submitted notebook headless and export its exercise functions with cloudpickle, whatever the notebook does.

The notebook runs top to bottom in a fresh kernel (nbclient), in a fresh folder that holds only a copy of it, with a
time limit per cell and one for the whole notebook. Errors in cells are allowed (a student's broken exploration must
not cost the exercises after it). A cell that runs over its limit is interrupted and the run goes on; over the
notebook's limit, or when the kernel dies (``os._exit``, a segfault: nothing inside a kernel can catch those), the
run stops. After every cell that defines an exercise function, and at the end, an added cell saves each
exercise function to ``exports/<name>`` with cloudpickle (functions and classes defined in the notebook travel by
value with the globals they use, modules by reference), or the reason it could not to ``exports/<name>.error``. So
what the notebook defined before it stopped is still graded, and the status says why it stopped.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from course_lib.grading.regrade.sheet import defined_names, parse_cell

OK, CELL_TIMEOUT, NOTEBOOK_TIMEOUT, KERNEL_DIED, UNREADABLE = (
    "ok", "cell timeout", "notebook timeout", "kernel died", "unreadable")
_PROBE_SECONDS = 15     # after an interrupt: how long the kernel gets to answer before it counts as stuck
_EXPORT_SECONDS = 120   # the final export cell's own limit (outside the notebook's budget)
_ADDED = "course-regrade-export"  # metadata tag of the cells the re-grade adds

_EXPORT_CELL = '''\
def _course_regrade_export(names, folder):
    """Added by the re-grade: save each exercise function with cloudpickle, or why it could not be saved."""
    import os, cloudpickle
    for name in names:
        target = os.path.join(folder, name)
        try:
            data, keep, drop = cloudpickle.dumps(globals()[name]), target, target + ".error"
        except KeyError:
            data, keep, drop = f"`{{name}}` is not defined in the notebook".encode(), target + ".error", target
        except BaseException as exc:
            data, keep, drop = f"{{type(exc).__name__}}: {{exc}}".encode(), target + ".error", target
        with open(keep + ".part", "wb") as file:
            file.write(data)
        os.replace(keep + ".part", keep)
        if os.path.exists(drop):
            os.remove(drop)
_course_regrade_export({names!r}, {folder!r})
del _course_regrade_export
'''


@dataclass
class Execution:
    """How the headless run went: a status, one sentence for the instructor, the cells that raised, the exports."""

    status: str
    detail: str
    exports: Path
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notebook: nbformat.NotebookNode | None = None   # the executed notebook (without the added cells)


def execute_submission(path: Path, functions: list[str], workdir: Path, *, cell_timeout: float,
                       notebook_timeout: float) -> Execution:
    """Run ``path`` in ``workdir/run``, export ``functions`` to ``workdir/exports``; never raises for the notebook."""
    for name, value in (("cell_timeout", cell_timeout), ("notebook_timeout", notebook_timeout)):
        if not value > 0:
            raise ValueError(f"{name} must be positive seconds, got {value}")
    run, exports = workdir / "run", workdir / "exports"
    run.mkdir(parents=True)
    exports.mkdir(parents=True)
    try:
        student = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - a damaged submission is reported, not raised
        return Execution(UNREADABLE, f"not a readable notebook ({type(exc).__name__}: {exc})", exports)
    notebook, origin = _with_exports(student, functions, exports)
    nbformat.write(student, run / path.name)
    execution = _run(notebook, origin, run, exports, cell_timeout, notebook_timeout)
    execution.notebook = _executed(student, notebook, origin)
    return execution


def _with_exports(student: nbformat.NotebookNode, functions: list[str], exports: Path):
    """A copy of the notebook with an export cell after each cell defining an exercise and at the end.

    Returns the notebook and, per cell, its index in the submission (None for an added cell).
    """
    export = _EXPORT_CELL.format(names=list(functions), folder=str(exports))
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
    origin: list[int | None] = []
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        notebook.cells.append(nbformat.v4.new_code_cell(cell.source))
        origin.append(index)
        tree = parse_cell(cell.source)
        if functions and tree is not None and defined_names(tree) & set(functions):
            notebook.cells.append(nbformat.v4.new_code_cell(export, metadata={"tags": [_ADDED]}))
            origin.append(None)
    if functions:
        notebook.cells.append(nbformat.v4.new_code_cell(export, metadata={"tags": [_ADDED]}))
        origin.append(None)
    return notebook, origin


def _run(notebook, origin, run: Path, exports: Path, cell_timeout: float, notebook_timeout: float) -> Execution:
    """Execute cell by cell under the limits; stop on a dead kernel, a stuck kernel or the notebook's deadline."""
    client = NotebookClient(notebook, kernel_name="python3", allow_errors=True, interrupt_on_timeout=False,
                            shutdown_kernel="immediate", record_timing=False, startup_timeout=120,
                            resources={"metadata": {"path": str(run)}})
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_STRICT", "COURSE_RESULTS", "COURSE_NOTEBOOK")}
    start = time.monotonic()
    status, detail, errors = OK, "ran to the end", []
    last, index = len(notebook.cells) - 1, 0
    log = open(run.parent / "kernel.log", "wb")  # the kernel's own stdout/stderr (C-level output, warnings)
    try:
        with log, client.setup_kernel(env=env, stdout=log, stderr=log):
            for index, cell in enumerate(notebook.cells):
                added_last = index == last and origin[index] is None
                left = notebook_timeout - (time.monotonic() - start)
                if left <= 0 and not added_last:
                    status = NOTEBOOK_TIMEOUT
                    detail = f"stopped before {_name(origin, index)}: over {notebook_timeout:g} s"
                    break
                limit = _EXPORT_SECONDS if added_last else min(cell_timeout, left)
                client.timeout = max(1, math.ceil(limit))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    over_notebook = not added_last and limit < cell_timeout
                    if over_notebook:
                        status = NOTEBOOK_TIMEOUT
                        detail = (f"{_name(origin, index)} was still running when the notebook's "
                                  f"{notebook_timeout:g} s ran out; the run stopped there")
                        break
                    if status == OK:
                        status = CELL_TIMEOUT
                        detail = f"{_name(origin, index)} ran over {limit:.0f} s and was interrupted"
                    if added_last or not _interrupt(client):
                        detail += "; the kernel did not answer, so the run stopped there"
                        break
                    continue
                errors += [f"{_name(origin, index)}: {output.ename}: {output.evalue}"[:300]
                           for output in cell.outputs if output.output_type == "error"]
    except DeadKernelError:
        if status == OK or status == CELL_TIMEOUT:
            status = KERNEL_DIED
            detail = (f"the kernel died in {_name(origin, index)} (os._exit, or a crash such as a segfault); "
                      "the exercises defined before it are graded")
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot start is the submission's report, not a crash
        status, detail = KERNEL_DIED, f"the kernel failed ({type(exc).__name__}: {exc})"
    return Execution(status, detail, exports, errors, time.monotonic() - start)


def _executed(student: nbformat.NotebookNode, notebook: nbformat.NotebookNode, origin: list[int | None]
              ) -> nbformat.NotebookNode:
    """The submission with the outputs of this run (markdown cells kept, so "cell 42" is cell 42 of this file too;
    code cells the run never reached come back without outputs)."""
    executed = copy.deepcopy(student)
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for cell, where in zip(notebook.cells, origin):
        if where is not None:
            executed.cells[where].outputs = cell.get("outputs", [])
            executed.cells[where].execution_count = cell.get("execution_count")
    return executed


def _interrupt(client: NotebookClient) -> bool:
    """Interrupt the kernel after a time-out; True when it answers a trivial cell again within a few seconds."""
    run_sync(client.km.interrupt_kernel)()
    client.timeout = _PROBE_SECONDS
    try:
        client.execute_cell(nbformat.v4.new_code_cell("pass"), 0, store_history=False)
    except CellTimeoutError:
        return False
    return True


def _name(origin: list[int | None], index: int) -> str:
    """``cell 12`` (the submission's own numbering, from 0) or ``the re-grade's export cell``."""
    return "the re-grade's export cell" if origin[index] is None else f"cell {origin[index]}"
