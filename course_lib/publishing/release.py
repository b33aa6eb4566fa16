"""Build the student notebooks from the instructor notebooks: ``python -m course_lib.publishing.release notebooks student``.

The markers are nbgrader's, so an instructor can switch to nbgrader at any time:

- code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (inside a function or class body) becomes
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the marker's indentation;
- ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions are removed (a cell left empty goes too);
- cells tagged ``solution-only`` are dropped;
- outputs, execution counts, execution timings and widget state are cleared.

Cells that hold a solution or carry the tag ``exercise`` (they call an exercise directly) get the tag
``raises-exception`` so that "Run All" and nbclient go on past the student's ``NotImplementedError``.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SOLUTION_ONLY_TAG, EXERCISE_TAG, RAISES_TAG = "solution-only", "exercise", "raises-exception"
_MARKER_LIKE = re.compile(r"#.*\b(BEGIN|END)\s+(SOLUTION|HIDDEN\s+TESTS?)\b", re.IGNORECASE)
_BODIES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def release_source(source: str, where: str = "cell") -> str:
    """The student version of one code cell's source; ValueError (naming ``where`` and the line) on bad markers."""
    lines = source.split("\n")
    tree = _parse(lines, where)
    out: list[str] = []
    region: tuple[str, int, str] | None = None  # (marker, line number, indentation) of the open region
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if region is not None:
                raise ValueError(f"{where}, line {number}: {marker!r} inside the region opened at line {region[1]}")
            indent = line[: len(line) - len(line.lstrip())]
            if marker == BEGIN_SOLUTION and _enclosing_body(tree, lines, number) is None:
                raise ValueError(f"{where}, line {number}: {BEGIN_SOLUTION!r} must be inside a function or class body")
            region = (marker, number, indent)
        elif marker in (END_SOLUTION, END_HIDDEN):
            expected = END_SOLUTION if region and region[0] == BEGIN_SOLUTION else END_HIDDEN
            if region is None or marker != expected:
                raise ValueError(f"{where}, line {number}: {marker!r} without a matching begin marker")
            if marker == END_SOLUTION:
                if _enclosing_body(tree, lines, number) is not _enclosing_body(tree, lines, region[1]):
                    raise ValueError(f"{where}, lines {region[1]}-{number}: a solution must stay inside one body")
                out += [region[2] + stub for stub in STUB]
            region = None
        elif _MARKER_LIKE.search(line):
            raise ValueError(f"{where}, line {number}: malformed marker {marker!r} (expected one of "
                             f"{BEGIN_SOLUTION!r}, {END_SOLUTION!r}, {BEGIN_HIDDEN!r}, {END_HIDDEN!r})")
        elif region is None:
            out.append(line)
    if region is not None:
        raise ValueError(f"{where}, line {region[1]}: {region[0]!r} is never closed")
    student = "\n".join(out)
    _parse(student.split("\n"), f"{where} (student version)")
    return student


def release_notebook(notebook: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a whole notebook (the input is not modified)."""
    student = nbformat.from_dict(notebook)
    student.metadata.pop("widgets", None)
    cells = []
    for index, cell in enumerate(student.cells):
        tags = list(cell.metadata.get("tags", []))
        if SOLUTION_ONLY_TAG in tags:
            continue
        where = f"{name}, cell {index}"
        if cell.cell_type != "code":
            if any(m in cell.source for m in (BEGIN_SOLUTION, BEGIN_HIDDEN)):
                raise ValueError(f"{where}: markers in a {cell.cell_type} cell are not supported; "
                                 f"tag the cell {SOLUTION_ONLY_TAG!r} instead")
            cells.append(cell)
            continue
        had_code, has_solution = bool(cell.source.strip()), BEGIN_SOLUTION in cell.source
        cell.source = release_source(cell.source, where)
        if had_code and not cell.source.strip():
            continue  # only hidden tests were in it
        if (has_solution or EXERCISE_TAG in tags) and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        if tags:
            cell.metadata["tags"] = tags
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    student.cells = cells
    nbformat.validate(student)
    return student


def release_directory(source: Path, target: Path) -> list[Path]:
    """Write the student version of every ``source/*.ipynb`` to ``target``; return the written paths."""
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise ValueError(f"no notebook directory at {source}")
    if target.resolve() == source.resolve():
        raise ValueError(f"the student directory must differ from the instructor directory ({source})")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.ipynb")):
        student = release_notebook(nbformat.read(path, as_version=4), path.name)
        nbformat.write(student, target / path.name)
        written.append(target / path.name)
    return written


def _parse(lines: list[str], where: str) -> ast.Module:
    """Parse a cell, with IPython magics (``%...``, ``!...``) blanked out so line numbers stay the same."""
    if lines and lines[0].lstrip().startswith("%%"):
        lines = ["#"] + lines[1:]
    code = "\n".join("#" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise ValueError(f"{where}, line {exc.lineno}: not valid Python ({exc.msg})") from None


def _enclosing_body(tree: ast.Module, lines: list[str], number: int) -> ast.AST | None:
    """The innermost function or class whose body holds line ``number`` (a comment line, so indentation decides)."""
    indent = len(lines[number - 1]) - len(lines[number - 1].lstrip())
    found = None
    for node in ast.walk(tree):
        if isinstance(node, _BODIES) and node.lineno < number and node.col_offset < indent \
                and number <= _last_body_line(node, lines):
            if found is None or node.col_offset > found.col_offset:
                found = node
    return found


def _last_body_line(node: ast.AST, lines: list[str]) -> int:
    """The node's last line, extended over the blank and comment lines indented deeper than its ``def``/``class``."""
    last = node.end_lineno
    for number in range(node.end_lineno + 1, len(lines) + 1):
        line = lines[number - 1]
        if not line.strip():
            continue
        if line.lstrip().startswith("#") and len(line) - len(line.lstrip()) > node.col_offset:
            last = number
            continue
        break
    return last


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m course_lib.publishing.release SOURCE_DIR TARGET_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.publishing.release", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="instructor notebooks (e.g. notebooks)")
    parser.add_argument("target", type=Path, help="where the student notebooks go (e.g. student)")
    args = parser.parse_args(argv)
    try:
        written = release_directory(args.source, args.target)
    except ValueError as exc:
        print(f"release failed: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"released {len(written)} notebook(s) from {args.source} to {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
