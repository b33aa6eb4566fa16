"""What the re-grade's worker does around the student's code: a snapshot of the grader, an audit hook, a careful load.

The worker imports the grader, then loads the student's exported function and calls it through the check. Loading a
pickle and calling the function both run the student's code in the grader's process, so:

- :class:`Snapshot` records the functions, classes and modules the checks rely on (``builtins``, ``math``,
  ``torch`` and its common modules and classes, every ``course_lib`` module and class, including each function's
  code and defaults, the fields of course_lib's tasks and registered checks, torch's global module hooks). After
  loading, after every call of the student's function and at the end of the check it compares, puts back what was
  replaced, and reports it: the check fails with "your code changed torch.allclose". Torch's own lazy wrappers
  (``functools.wraps`` around the original, in library code) are accepted.
- :class:`Guard` installs an audit hook (PEP 578) that refuses, while the student's code runs (loading, and each call,
  which runs in a thread of its own), what no exercise needs: ctypes, other threads' frames, the garbage collector's
  object lists, tracing, new processes, sockets, new code objects, files under ``/proc`` (the process's own memory)
  and rebinding the code of a protected function; a call that leaves a thread of its own running fails too.
- :class:`StudentUnpickler` refuses the globals a crafted pickle would use to run commands or set attributes.

None of this is a sandbox (see docs/instructors.md for what still gets through); it removes the cheap tricks and
makes the expensive ones visible.
"""

from __future__ import annotations

import functools
import inspect
import io
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import torch

from course_lib.grading.runtime.frames import is_library

_PROTECTED_MODULES = ("builtins", "math", "cmath", "operator", "functools", "inspect", "copy", "numbers", "types",
                      "traceback", "threading", "json", "torch", "torch.nn", "torch.nn.functional", "torch.linalg",
                      "torch.testing", "torch.autograd", "torch.optim", "torch.nn.modules.module", "numpy")
_PROTECTED_PREFIXES = ("course_lib.",)
_CODE_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
               types.MethodType, types.ModuleType, type, classmethod, staticmethod, property, functools.partial)
_REFUSED_EVENTS = ("ctypes.", "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
                   "gc.get_referrers", "gc.get_referents", "gc.get_objects", "os.system", "os.exec", "os.posix_spawn",
                   "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg", "subprocess.", "socket.", "pty.",
                   "cpython.PyInterpreterState", "sys.monitoring")
_REFUSED_GLOBALS = {"os", "posix", "nt", "subprocess", "sys", "ctypes", "_ctypes", "gc", "importlib", "shutil",
                    "socket", "pty", "signal", "runpy", "code", "codeop", "marshal", "_thread", "threading",
                    "multiprocessing"}
_REFUSED_BUILTINS = {"eval", "exec", "compile", "__import__", "open", "setattr", "delattr", "globals", "vars",
                     "breakpoint", "input", "exit", "quit", "help"}


def _protected_modules() -> list[types.ModuleType]:
    """The loaded modules the checks rely on."""
    return [module for name, module in list(sys.modules.items()) if isinstance(module, types.ModuleType)
            and (name in _PROTECTED_MODULES or name == "course_lib" or name.startswith(_PROTECTED_PREFIXES))]


def _protected_classes(modules: list[types.ModuleType]) -> list[type]:
    """The classes defined in course_lib, torch's classes the checks use (Tensor, Module, ...) and their bases."""
    classes: dict[int, type] = {}
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, type) and (value.__module__ or "").startswith(("course_lib", "torch")):
                for cls in value.__mro__:
                    if cls is not object:
                        classes[id(cls)] = cls
    return list(classes.values())


class Snapshot:
    """The identity of every callable attribute of the protected modules and classes, of each function's code, of the
    fields of course_lib's module-level objects (tasks, registered checks), and torch's global module hooks."""

    def __init__(self) -> None:
        modules = _protected_modules()
        self.owners: list[tuple[str, Any, dict[str, Any], set[str] | None]] = []  # label, owner, items, class keys
        for owner in [*modules, *_protected_classes(modules)]:
            is_module = isinstance(owner, types.ModuleType)
            label = owner.__name__ if is_module else f"{owner.__module__}.{owner.__qualname__}"
            items = {name: value for name, value in list(vars(owner).items()) if isinstance(value, _CODE_TYPES)}
            self.owners.append((label, owner, items, None if is_module else set(vars(owner))))
        self.functions = {id(f): (f, f.__code__, f.__defaults__, f.__kwdefaults__)
                          for _, _, items, _ in self.owners for f in items.values() if isinstance(f, types.FunctionType)}
        self.modules = {module.__name__: module for module in modules}
        ours = [(f"{module.__name__}.{name}", value) for module in modules if module.__name__.startswith("course_lib")
                for name, value in list(vars(module).items()) if not name.startswith("__")]
        self.registries = [(label, value, dict(value)) for label, value in ours if isinstance(value, dict)]
        objects = ours + [(f"{label}[{key!r}]", item) for label, value, items in self.registries
                          for key, item in items.items()]
        self.objects = [(label, value, dict(vars(value))) for label, value in objects
                        if type(value).__module__.startswith("course_lib") and hasattr(value, "__dict__")
                        and not isinstance(value, (type, types.FunctionType, types.ModuleType))]
        self.hooks = {name: dict(value) for name, value in vars(torch.nn.modules.module).items()
                      if name.startswith("_global_") and isinstance(value, dict)}  # hooks on every module's forward

    def restore(self) -> list[str]:
        """Put back everything replaced since the snapshot; return what was (``torch.allclose``, ...)."""
        changed: list[str] = []
        for label, owner, items, keys in self.owners:
            now = vars(owner)
            for name, value in list(items.items()):
                if now.get(name) is value:
                    continue
                if _library_wrapper(now.get(name), value):  # torch wraps a few functions lazily: keep the wrapper
                    items[name] = now[name]
                    continue
                changed.append(f"{label}.{name}")
                setattr(owner, name, value)
            for name in set(now) - keys if keys is not None else ():  # a class attribute that hides an inherited one
                inherited = next((vars(base)[name] for base in owner.__mro__[1:] if name in vars(base)), None)
                if inherited is None or not isinstance(now[name], _CODE_TYPES) or _library_wrapper(now[name], inherited):
                    keys.add(name)
                    continue
                changed.append(f"{label}.{name}")
                delattr(owner, name)
        for function, code, defaults, kwdefaults in self.functions.values():
            if (function.__code__, function.__defaults__, function.__kwdefaults__) != (code, defaults, kwdefaults):
                changed.append(f"{function.__module__}.{function.__qualname__} (its code or defaults)")
                function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                changed.append(f"sys.modules[{name!r}]")
                sys.modules[name] = module
        for label, registry, items in self.registries:
            for key, value in items.items():
                if registry.get(key, registry) is not value:  # new keys are allowed (caches fill up)
                    changed.append(f"{label}[{key!r}]")
                    registry[key] = value
        for name, hooks in self.hooks.items():
            registry = vars(torch.nn.modules.module)[name]
            for key in set(registry) - set(hooks):
                changed.append(f"torch.nn.modules.module.{name} (a hook on every module)")
                del registry[key]
        for label, value, fields in self.objects:
            now = vars(value)
            for name, field in fields.items():
                if now.get(name, now) is not field:
                    changed.append(f"{label}.{name}")
                    object.__setattr__(value, name, field)  # frozen dataclasses too
        return changed


def _library_wrapper(new: Any, old: Any) -> bool:
    """True for a library's own wrapper around ``old`` (``functools.wraps``), as torch installs on first use.

    ``import torch._dynamo`` (which an optimizer's step may trigger) replaces ``torch.manual_seed`` by a wrapper, and an
    optimizer class's first instance wraps its ``step``: library code, ``__wrapped__`` pointing at the original.
    """
    code = getattr(new, "__code__", None)
    return getattr(new, "__wrapped__", None) is old and code is not None and is_library(code.co_filename)


def _in_proc(path: Any) -> bool:
    """True for a file under ``/proc`` (the process's memory, its file descriptors), however the path is written."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    path = os.path.abspath(os.fsdecode(path))
    return any(p.startswith("/proc/") for p in (os.path.realpath(path), os.path.realpath(os.path.dirname(path))))


def _library_thread(thread: threading.Thread) -> bool:
    """True for a thread whose code is a library's (tqdm's monitor), False for one running the student's code."""
    run = getattr(type(thread).run, "__code__", None)
    target = getattr(getattr(thread, "_target", None), "__code__", None)
    return all(code is None or is_library(code.co_filename) for code in (run, target))


class Guard:
    """The worker's protections: refuse sensitive events while the student's code runs, detect and undo patches."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.loading = False
        self.student_threads: set[int] = set()
        self.refused: list[str] = []
        self.changed: list[str] = []
        self._protected_ids = {id(owner) for _, owner, _, _ in self.snapshot.owners} | set(self.snapshot.functions)
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        """Refuse a sensitive event raised while the student's code runs (the exception reaches their code)."""
        if not (self.loading or threading.get_ident() in self.student_threads):
            return
        refused = event.startswith(_REFUSED_EVENTS) or (event == "code.__new__" and not self.loading) or (
            event == "open" and args and _in_proc(args[0])) or (
            event == "object.__setattr__" and args and id(args[0]) in self._protected_ids)
        if refused:
            what = (f"setting {args[1]} of {getattr(args[0], '__name__', args[0])}" if event == "object.__setattr__"
                    else f"open({os.fsdecode(args[0])!r})" if event == "open" else event)
            self._refuse(what)
            raise RuntimeError(f"the re-grade does not allow {what} in graded code")

    def _refuse(self, what: str) -> None:
        """Remember a refused action (the check fails even when the student's code caught the error)."""
        if what not in self.refused:
            self.refused.append(what)

    def check_patches(self) -> list[str]:
        """Undo and remember every patch of the protected modules since the snapshot."""
        changed = self.snapshot.restore()
        self.changed += [name for name in changed if name not in self.changed]
        return changed

    def load(self, data: bytes) -> Any:
        """Unpickle the student's export with the audit hook armed; then undo whatever the loading patched."""
        self.loading = True
        try:
            return StudentUnpickler(data).load()
        finally:
            self.loading = False
            self.check_patches()

    def wrap(self, function: Callable) -> Callable:
        """``function`` as the check should call it: in a thread the audit hook watches, patches undone after."""

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            box: dict[str, Any] = {}
            grad = torch.is_grad_enabled()  # grad mode is per thread: carry the caller's

            def target() -> None:
                self.student_threads.add(threading.get_ident())
                try:
                    with torch.set_grad_enabled(grad):
                        box["value"] = function(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the check as the student's exception
                    box["error"] = exc

            # Hooks on every module that the check itself added since (a fine-tuning budget's) are the grader's own.
            self.snapshot.hooks = {name: dict(vars(torch.nn.modules.module)[name]) for name in self.snapshot.hooks}
            running = set(threading.enumerate())
            thread = threading.Thread(target=target, name="student", daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(0.05)  # a short wait keeps the check's own time limit able to interrupt this thread
            for left in set(threading.enumerate()) - running - {thread}:
                if not _library_thread(left):  # it could patch the grader later, while the check compares
                    self._refuse(f"leaving a thread running ({left.name})")
            self.check_patches()
            if "error" in box:
                raise box["error"]
            return box.get("value")

        return guarded if callable(function) and not inspect.isclass(function) else function


class StudentUnpickler(pickle.Unpickler):
    """An unpickler that refuses the globals a crafted pickle uses to run commands or to set attributes."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))

    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".")[0]
        if root in _REFUSED_GLOBALS or (module == "builtins" and name in _REFUSED_BUILTINS):
            raise pickle.UnpicklingError(f"the re-grade does not load {module}.{name} from a submission")
        return super().find_class(module, name)
