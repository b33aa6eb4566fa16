"""Lines of a submitted notebook an instructor may want to read: code that reaches for the grader or the interpreter.

The re-grade does not score on these flags (an honest notebook may print ``sys.modules`` while exploring); it lists
them next to the score so that the instructor reads the few submissions that tamper, or try to. A flag is a hint
for a human, not a verdict, and obfuscated code (``getattr(__import__("c" + "types"), ...)``) is flagged by its
``__import__``/``getattr`` with a computed name, not by what it reaches.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from types import MappingProxyType

import nbformat

from course_lib.grading.regrade.answers import library_answer_flags
from course_lib.grading.regrade.sheet import parse_cell
from course_lib.grading.runtime import registry

# Names whose use in a notebook is worth a look, with what they can do to a grader.
_SUSPICIOUS_NAMES = {
    "_getframe": "reaches the caller's frames", "_current_frames": "reaches other threads' frames",
    "get_referrers": "finds objects that refer to a value", "get_objects": "lists every live object",
    "settrace": "traces the grader's code", "setprofile": "traces the grader's code",
    "__code__": "replaces a function's code", "__globals__": "reaches a function's module",
    "__closure__": "reaches a function's closure", "__reduce__": "runs code when unpickled",
    "__reduce_ex__": "runs code when unpickled", "__setstate__": "runs code when unpickled",
    "_exit": "ends the process without a trace", "addaudithook": "watches the interpreter",
    "__builtins__": "reaches the built-in functions", "modules": "reads or replaces imported modules",
    registry.PRIVATE_NAME: "reaches the registry of checks",
    "register_forward_hook": "runs code in a model's forward, where a check predicts",
    "register_forward_pre_hook": "runs code in a model's forward, where a check predicts",
    "register_module_forward_hook": "runs code in every module's forward",
    "register_module_forward_pre_hook": "runs code in every module's forward",
    "_forward_pre_hooks": "reaches a model's hooks (where a fine-tuning check counts)",
    "_forward_hooks": "reaches a model's hooks", "_forward_pre_hooks_with_kwargs": "reaches a model's hooks",
    "_global_forward_pre_hooks": "reaches the hooks on every module", "_global_forward_hooks":
    "reaches the hooks on every module",
}
# Inside an exercise function (code the grader runs): reading the graded split, or weights from another model.
_TEST_SPLIT = {"heldout_ids": "reads the held-out text the check scores on",
               "test_set": "reads the test split the check scores on", "test_batches": "reads the test split",
               "test_labels": "reads the test labels",
               "_heldout_ids": "reaches the grader's cached held-out text", "_other_ids": "reaches the grader's cache",
               "_test_only_runs": "reaches the grader's leak detector"}
# Methods of the handed model that a grader may call: replacing one inside an exercise puts code where the grader runs.
_MODEL_METHODS = {"state_dict", "_save_to_state_dict", "load_state_dict", "forward", "parameters", "named_parameters",
                  "modules", "named_modules", "eval", "train", "__class__", "__call__"}
_SUSPICIOUS_CALLS = {"exec", "eval", "compile", "__import__", "setattr", "delattr"}
_WATCHED_MODULES = {"torch", "math", "numpy", "builtins", "course_lib", "operator", "functools", "sys", "cmath",
                    "random", "inspect"}


def suspicious_lines(notebook: nbformat.NotebookNode, limit: int = 8, exercises: frozenset[str] = frozenset(),
                     checks: Mapping[str, str] = MappingProxyType({})) -> list[str]:
    """Up to ``limit`` one-line flags such as ``cell 12: assigns torch.allclose``, in notebook order.

    ``exercises``: the exercise functions' names; in their bodies (code the grader runs) ``load_spam("test")``, the
    tasks' test and held-out data and ``load_state_dict`` (weights copied from another model) are flagged too.
    ``checks``: exercise function -> its check; a call of the library function that implements the exercise is
    flagged (the course's rule, :mod:`answers`).
    """
    trees = [(index, parse_cell(cell.source)) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    trees = [(index, tree) for index, tree in trees if tree is not None]
    watched = {"check"} | _WATCHED_MODULES | set().union(*(_module_aliases(tree) for _, tree in trees))
    answers = library_answer_flags(trees, checks)
    flags: list[str] = []
    for index, tree in trees:
        own = [reason for cell, reason in answers if cell == index]
        for reason in _cell_flags(tree, watched) + _exercise_flags(tree, exercises | frozenset(checks)) + own:
            flag = f"cell {index}: {reason}"
            if flag not in flags:
                flags.append(flag)
    return flags[:limit] + ([f"... and {len(flags) - limit} more"] if len(flags) > limit else [])


def _module_aliases(tree: ast.Module) -> set[str]:
    """Names a cell binds to the modules a grader relies on: ``torch``, ``F``, ``np``, ``registry``, ..."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                module = node.module if isinstance(node, ast.ImportFrom) and node.module else alias.name
                if module.split(".")[0] in _WATCHED_MODULES:
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def _exercise_flags(tree: ast.Module, exercises: frozenset[str]) -> list[str]:
    """Reasons to look inside the cell's exercise functions: the graded data read, weights from another model."""
    found: list[tuple[int, str]] = []
    for function in tree.body:
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or function.name not in exercises:
            continue
        for node in ast.walk(function):
            name = getattr(node, "attr", getattr(node, "id", None)) if isinstance(node, (ast.Attribute, ast.Name)) \
                else None
            if name in _TEST_SPLIT:
                found.append((node.lineno, f"`{function.name}` uses {ast.unparse(node)} ({_TEST_SPLIT[name]})"))
            elif isinstance(node, ast.Call) and _called(node) == "load_spam" and any(
                    isinstance(arg, ast.Constant) and arg.value == "test"
                    for arg in [*node.args, *(keyword.value for keyword in node.keywords)]):
                found.append((node.lineno, f"`{function.name}` calls {ast.unparse(node)} (reads the test split the "
                                           "check scores on)"))
            elif replaced := _replaced_method(node):
                found.append((node.lineno, f"`{function.name}` replaces {replaced} (a method of the model that the "
                                           "grader may call)"))
            elif isinstance(node, ast.Call) and _called(node) == "load_state_dict":
                found.append((node.lineno, f"`{function.name}` calls {ast.unparse(node.func)}(...) (copies weights "
                                           "from another model into the graded one)"))
    return [reason for _, reason in sorted(found, key=lambda item: item[0])]


def _replaced_method(node: ast.AST) -> str | None:
    """``model.state_dict`` for ``model.state_dict = ...`` (a method of the model assigned over); else None."""
    if not isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        return None
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return next((ast.unparse(t) for t in targets if isinstance(t, ast.Attribute) and t.attr in _MODEL_METHODS), None)


def _called(call: ast.Call) -> str | None:
    """The name a call calls: ``f`` for ``f(...)`` and ``x.f(...)``."""
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def _cell_flags(tree: ast.Module, watched: set[str]) -> list[str]:
    """The reasons to look at one cell, in source order; ``watched`` names modules (and ``check``)."""
    found: list[tuple[int, str]] = []
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}  # model.modules() is no flag
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
                dunder = isinstance(target, ast.Attribute) and target.attr.startswith("__") and names != {"self"}
                if isinstance(target, (ast.Attribute, ast.Subscript)) and (names & watched or dunder):
                    found.append((line, f"assigns {ast.unparse(target)}"))
                elif isinstance(target, ast.Name) and target.id == "check":
                    found.append((line, "rebinds `check`"))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == "check":
            found.append((line, "defines its own `check`"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SUSPICIOUS_CALLS:
            found.append((line, f"calls {node.func.id}(...)"))
        elif isinstance(node, ast.Attribute) and node.attr in _SUSPICIOUS_NAMES and not (
                node.attr == "modules" and id(node) in called):
            found.append((line, f"uses {ast.unparse(node)} ({_SUSPICIOUS_NAMES[node.attr]})"))
        elif isinstance(node, ast.Name) and node.id in _SUSPICIOUS_NAMES and node.id != "modules":
            found.append((line, f"uses {node.id} ({_SUSPICIOUS_NAMES[node.id]})"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                full = f"{module}.{alias.name}" if module else alias.name
                if full.split(".")[0] in {"ctypes", "gc"} or (full.startswith("course_lib.grading")
                                                               and full != "course_lib.grading.check"):
                    found.append((line, f"imports {full}"))
    return [reason for _, reason in sorted(found, key=lambda item: item[0])]
