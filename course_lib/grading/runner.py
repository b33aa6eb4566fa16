"""Calling a student's function safely: a time limit, their own line on error, "not attempted", mutated inputs.

A check calls the student's code only through :func:`call_student`. It turns what can go wrong into exceptions the
check registry renders for the student:

- :class:`NotAttempted`: the exercise stub raised ``NotImplementedError`` (the released notebook's placeholder);
- :class:`StudentError`: the student's code raised; it carries the student's own line, found in the traceback;
- :class:`TimedOut`: no answer within the time limit (an endless loop, most likely);
- :class:`CheckFailure`: the code ran but the answer is wrong (raised by the checks themselves and by ``compare``).

The time limit runs the function in a daemon thread and waits with ``join(timeout)``. Python cannot kill a thread,
so after a time-out the student's loop keeps running in the background (and keeps a CPU core busy) until the kernel
is restarted; the message says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
import re
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

DEFAULT_TIME_LIMIT = 30.0  # seconds per call of the student's function

_time_limit: contextvars.ContextVar[float | None] = contextvars.ContextVar("time_limit", default=DEFAULT_TIME_LIMIT)


class CheckFailure(Exception):
    """The student's answer is wrong: a one-sentence message, details (expected / got) and a hint."""

    def __init__(self, message: str, details: Sequence[str] = (), hint: str | None = None):
        super().__init__(message)
        self.message, self.details, self.hint = message, list(details), hint


class NotAttempted(Exception):
    """The exercise still raises ``NotImplementedError``."""


class StudentError(Exception):
    """The student's code raised; ``student_line`` locates the line in their code."""

    def __init__(self, message: str, student_line: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.student_line, self.hint = message, student_line, hint


class TimedOut(StudentError):
    """The student's function did not return within the time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Use ``seconds`` (``None``: no limit) as the time limit of every ``call_student`` inside the block."""
    if seconds is not None and seconds <= 0:
        raise ValueError(f"time_limit must be positive seconds or None, got {seconds}")
    token = _time_limit.set(seconds)
    try:
        yield
    finally:
        _time_limit.reset(token)


def call_student(fn: Callable, *args: Any, error_hints: Sequence[tuple[str, str]] = (), **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` under the time limit; fail if it mutates a tensor argument.

    ``error_hints`` are ``(regex, hint)`` pairs matched against ``"ErrorName: message"`` of a student's exception.
    """
    if not callable(fn):
        raise CheckFailure(f"expected a function, got {type(fn).__name__}: pass the function itself, "
                           "without calling it.")
    arguments = _bind(fn, args, kwargs)
    before = {path: tensor.clone() for path, tensor in _tensors(arguments)}
    value, error = _run(fn, args, kwargs, _time_limit.get())
    if error is not None:
        raise _student_exception(error, error_hints)
    for path, tensor in _tensors(arguments):
        _assert_unchanged(path, before[path], tensor)
    return value


def _bind(fn: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Argument names -> values, as ``fn`` would see them; a clear failure when the signature does not fit."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: name arguments by position
        return {f"argument {i + 1}": value for i, value in enumerate(args)} | kwargs
    try:
        return dict(signature.bind(*args, **kwargs).arguments)
    except TypeError as exc:
        called = ", ".join([f"<{type(a).__name__}>" for a in args] + [f"{k}=..." for k in kwargs])
        raise CheckFailure(
            f"your function's signature does not accept the arguments the check passes ({exc}).",
            details=[f"Your signature: {getattr(fn, '__name__', 'fn')}{signature}", f"The check calls: fn({called})"],
            hint="keep the parameter names and order of the exercise's stub.",
        ) from None


def _run(fn: Callable, args: tuple, kwargs: dict, limit: float | None) -> tuple[Any, BaseException | None]:
    """Run the call (in a daemon thread when there is a time limit); return (value, exception or None)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the student's SystemExit must not end the kernel either
            box["error"] = exc

    if limit is None:
        target()
    else:
        worker = threading.Thread(target=target, daemon=True, name=f"course-check-{getattr(fn, '__name__', 'fn')}")
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            raise TimedOut(
                f"your function did not return within {limit:g} s.",
                hint="look for a loop whose condition never changes (an endless loop). The unfinished call keeps "
                "running in the background (Python cannot stop a thread): restart the kernel if the notebook slows "
                "down.",
            )
    return box.get("value"), box.get("error")


def _student_exception(error: BaseException, error_hints: Sequence[tuple[str, str]]) -> Exception:
    """NotAttempted for the stub's ``raise NotImplementedError``, otherwise a StudentError with the student's line."""
    frames = traceback.extract_tb(error.__traceback__)
    raising = frames[-1] if frames else None
    if (isinstance(error, NotImplementedError) and raising is not None and not _is_library(raising.filename)
            and ("NotImplementedError" in (raising.line or "") or not str(error))):
        return NotAttempted("the exercise still raises NotImplementedError: replace it with your code.")
    described = f"{type(error).__name__}: {error}".strip().rstrip(":")
    hint = next((text for pattern, text in error_hints if re.search(pattern, described)), None)
    frame = student_frame(frames)
    return StudentError(f"your code raised {described}", student_line=_describe(frame) if frame else None, hint=hint)


def student_frame(frames: traceback.StackSummary | list) -> traceback.FrameSummary | None:
    """The frame of the student's own code: the deepest notebook-cell frame, else the deepest non-library frame."""
    cells = [frame for frame in frames if _is_cell(frame.filename)]
    if cells:
        return cells[-1]
    own = [frame for frame in frames if not _is_library(frame.filename)]
    return own[-1] if own else None


def _is_cell(filename: str) -> bool:
    """True for the file names IPython gives notebook cells (``/tmp/ipykernel_123/456.py``, ``<ipython-input-...>``)."""
    return "ipykernel_" in filename or filename.startswith(("<ipython-input", "<cell"))


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../course_lib
_LIBRARY_DIRS = tuple({_PACKAGE_DIR, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                       sysconfig.get_paths()["platlib"]})


def _is_library(filename: str) -> bool:
    """True for course_lib, the standard library and installed packages: code the student did not write."""
    if filename.startswith("<frozen") or "site-packages" in filename or "dist-packages" in filename:
        return True
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS) if os.path.isabs(filename) else False


def _describe(frame: traceback.FrameSummary) -> str:
    """``Cell In[12], line 4, in mask_tokens: labels = ...`` (or ``file.py:4``), as a student reads it."""
    where = f"{os.path.basename(frame.filename)}, line {frame.lineno}"
    if _is_cell(frame.filename):
        count = _execution_count(frame.filename)
        where = f"Cell In[{count}], line {frame.lineno}" if count is not None else f"line {frame.lineno} of its cell"
    line = (frame.line or "").strip()
    return f"{where}, in {frame.name}" + (f": {line}" if line else "")


def _execution_count(filename: str) -> int | None:
    """The ``In[n]`` number IPython gave the cell stored under ``filename`` (None outside IPython)."""
    ipython_module = sys.modules.get("IPython")
    shell = ipython_module.get_ipython() if ipython_module is not None else None
    try:
        return shell.compile._filename_map[filename]  # IPython's own cell-file -> prompt-number table
    except (AttributeError, KeyError, TypeError):
        return None


def _tensors(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside ``value`` (a dict of arguments, lists, tuples, dicts), with a readable path."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")


def _assert_unchanged(path: str, before: torch.Tensor, after: torch.Tensor) -> None:
    """Fail with the first changed position when the student's function modified an input in place."""
    if after.shape != before.shape or after.dtype != before.dtype:
        raise CheckFailure(f"your function changed its input `{path}` in place (shape or dtype changed).",
                           hint=f"work on a copy: `{path} = {path}.clone()`, or build a new tensor.")
    same = (after == before) | (after.isnan() & before.isnan()) if before.is_floating_point() else after == before
    if bool(same.all()):
        return
    where = tuple(int(i) for i in (~same).nonzero()[0])
    raise CheckFailure(
        f"your function changed its input `{path}` in place.",
        details=[f"At {list(where)}: it was {before[where].item()}, after your call it is {after[where].item()}."],
        hint=f"the caller still needs the original: work on a copy (`{path} = {path}.clone()`) or build a new tensor.",
    )
