"""The instructor's own solution of an exercise, rebuilt from the notebook without running the notebook.

``reference_functions(notebook_path, exercise)`` defines, in a fresh ``__main__``-like namespace, the notebook's
imports, then the top-level statements the exercise's functions need (the assignments and definitions of the names
they use, found by name, recursively, latest binding first in notebook order), then the functions themselves. So the
functions are pickled by value, as the re-grade's export cell pickles them. Used by the test that every shipped
reference earns full marks and by ``benchmarks/grading_thresholds.py``; a statement that needs the notebook's state
beyond these (a trained model) is run as written, so keep exercise functions free of such globals.
"""

from __future__ import annotations

import ast
import symtable
from pathlib import Path

import nbformat

from course_lib.grading.regrade.sheet import Exercise, parse_cell


def _statements(path: Path) -> list[ast.stmt]:
    notebook = nbformat.read(path, as_version=4)
    trees = [parse_cell(cell.source) for cell in notebook.cells if cell.cell_type == "code"]
    return [node for tree in trees if tree is not None for node in tree.body]


def _binds(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    return set()


def _uses(node: ast.stmt) -> set[str]:
    """The global names a statement reads (a function's or class's free names only, not its locals)."""
    table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    names = set()
    for child in [table, *table.get_children()]:
        names |= {s.get_name() for s in child.get_symbols() if s.is_referenced() and (s.is_global() or (
            child is table and not s.is_imported()))}
        names |= {s for grandchild in child.get_children() for s in _globals_of(grandchild)}
    return names


def _globals_of(table: symtable.SymbolTable) -> set[str]:
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
    return names.union(*(_globals_of(child) for child in table.get_children()))


def reference_functions(path: Path, exercise: Exercise) -> list:
    """The exercise's functions as the instructor notebook defines them, in the order the check takes them."""
    statements = _statements(path)
    imports = [node for node in statements if isinstance(node, ast.Import)
               or (isinstance(node, ast.ImportFrom) and node.module != "__future__")]
    chosen: list[int] = []
    wanted = list(exercise.functions)
    done: set[str] = set()
    limit = len(statements)
    while wanted:
        name = wanted.pop()
        if name in done:
            continue
        done.add(name)
        index = max((i for i, node in enumerate(statements[:limit]) if name in _binds(node)), default=None)
        if name == exercise.function and index is not None:
            limit = index  # what the exercise uses is bound before it
        if index is not None and index not in chosen:
            chosen.append(index)
            wanted += sorted(_uses(statements[index]) - done)
    body = imports + [statements[i] for i in sorted(chosen)]
    namespace = {"__name__": "__main__"}
    exec(compile(ast.Module(body=body, type_ignores=[]), path.name, "exec"), namespace)  # noqa: S102 - our notebook
    return [namespace[name] for name in exercise.functions]
