"""The exercise sheet of an instructor notebook, read with ``ast``: which function each ``check.<name>(...)`` grades.

An exercise is a top-level ``def`` (or ``class``) whose body holds ``### BEGIN SOLUTION`` and a call
``check.<name>(function, key=literal, ...)`` that passes it positionally (a check may take several such functions:
``check.sampling_filters(top_k, nucleus)``). The re-grade calls the same check with the
same keyword arguments (read with ``ast.literal_eval``), so a call that hands the check a notebook value
(``test_labels``) or a computed argument cannot be re-graded: it is listed with the reason, and scored 0 for everyone.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

BEGIN_SOLUTION = "### BEGIN SOLUTION"
_BOOK_METHODS = {"summary", "results", "reset", "available"}  # ``check.summary()`` etc. grade nothing
_TRANSFORMER = TransformerManager()


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: ``check.<check>(<function>, **kwargs)`` in cell ``cell`` of the instructor notebook."""

    check: str
    function: str
    kwargs: dict = field(default_factory=dict)
    column: str = ""                 # the CSV column: the check's name, ``name_2`` for its second exercise
    cell: int = 0
    problem: str | None = None       # why it cannot be re-graded; None when it can
    others: tuple[str, ...] = ()     # further functions, in order: check.sampling_filters(top_k, nucleus)

    @property
    def functions(self) -> tuple[str, ...]:
        """Every function the check is handed, in the call's order."""
        return (self.function, *self.others)


def parse_cell(source: str) -> ast.Module | None:
    """The cell's syntax tree with IPython magics turned into calls; None when it is not valid Python."""
    try:
        return ast.parse(_TRANSFORMER.transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def defined_names(tree: ast.Module) -> set[str]:
    """Names a cell binds at top level: ``def``, ``class``, assignments and imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def solution_names(source: str, tree: ast.Module) -> set[str]:
    """Top-level functions and classes whose lines hold ``### BEGIN SOLUTION``."""
    lines = source.splitlines()
    marked = {number for number, line in enumerate(lines, start=1) if line.strip() == BEGIN_SOLUTION}
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and any(node.lineno < number <= _last_line(node, lines) for number in marked)}


def exercise_sheet(notebook: nbformat.NotebookNode, registered: dict[str, float]) -> list[Exercise]:
    """Every exercise of an instructor notebook, in order; ``registered`` maps check names to their points."""
    cells = [(index, cell.source, parse_cell(cell.source)) for index, cell in enumerate(notebook.cells)
             if cell.cell_type == "code"]
    solutions = set().union(*(solution_names(source, tree) for _, source, tree in cells if tree is not None))
    exercises: list[Exercise] = []
    for index, _, tree in cells:
        for call in _check_calls(tree) if tree is not None else []:
            graded = [arg.id for arg in call.args if isinstance(arg, ast.Name) and arg.id in solutions]
            if not graded:
                continue  # the check runs on a library function (a demonstration): nothing the student wrote
            name = call.func.attr
            kwargs, problem = _literal_kwargs(call)
            if len(graded) != len(call.args):
                problem = (f"check.{name}(...) passes {len(call.args)} positional arguments, of which "
                           f"{len(call.args) - len(graded)} are not exercise functions; the re-grade passes only the "
                           f"student's functions (make the others literal keyword arguments)")
            elif name not in registered:
                problem = f"no registered check named {name!r}"
            taken = sum(exercise.check == name for exercise in exercises)
            column = name if taken == 0 else f"{name}_{taken + 1}"
            exercises.append(Exercise(name, graded[0], kwargs, column, index, problem, tuple(graded[1:])))
    return exercises


def _check_calls(tree: ast.Module) -> list[ast.Call]:
    """``check.<name>(...)`` calls anywhere in the cell, in source order."""
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "check"
             and node.func.attr not in _BOOK_METHODS]
    return sorted(calls, key=lambda node: (node.lineno, node.col_offset))


def _literal_kwargs(call: ast.Call) -> tuple[dict, str | None]:
    """The call's keyword arguments as Python values; a problem sentence for the first one that is not a literal."""
    kwargs = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            return kwargs, f"check.{call.func.attr}(...) passes **{ast.unparse(keyword.value)}; use literal keywords"
        try:
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            return kwargs, (f"check.{call.func.attr}(...) passes {keyword.arg}={ast.unparse(keyword.value)}, "
                            f"not a literal; the re-grade cannot rebuild it")
    return kwargs, None


def _last_line(node: ast.AST, lines: list[str]) -> int:
    """The node's last line, extended over the comment lines indented deeper than its ``def``/``class``."""
    last = node.end_lineno
    for number in range(node.end_lineno + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.strip() and not (line.lstrip().startswith("#") and len(line) - len(line.lstrip()) > node.col_offset):
            break
        last = number if line.strip() else last
    return last
