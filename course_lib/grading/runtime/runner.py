"""Calling a student's function safely: copies in, changed inputs reported, "not attempted", their own line on error.

A check calls the student's code only through :func:`call_student` (or :func:`run_student` when it needs what the
student was handed). Every argument is handed over as a deep copy, except those wrapped in :class:`AsIs` (a model
to train, a batch loader); after the call, each copy is compared with the check's original, and a change (a tensor
written in place, an item popped from a list, a parameter list emptied) fails with the first difference.

What can go wrong becomes an exception the registry renders for the student:

- :class:`NotAttempted`: the exercise stub raised ``NotImplementedError`` (the released notebook's placeholder);
- :class:`StudentError`: the student's code raised; it carries the student's own line, found in the traceback;
- :class:`CheckFailure`: the code ran but the answer is wrong (raised by the checks themselves and by ``compare``);
- :class:`~course_lib.grading.runtime.deadline.TimeLimitExceeded` passes through untouched: the registry runs the whole
  check under one time limit (see ``deadline``) and reports it as its own outcome.
"""

from __future__ import annotations

import copy
import inspect
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from course_lib.grading.runtime.deadline import TimeLimitExceeded, time_limit
from course_lib.grading.runtime.errors import CheckFailure, NotAttempted, StudentError
from course_lib.grading.runtime.frames import describe, is_library, student_frame
from course_lib.grading.runtime.inputs import find_change, kind

__all__ = ["AsIs", "StudentCall", "call_student", "run_student", "student_frame", "time_limit", "CheckFailure",
           "NotAttempted", "StudentError", "TimeLimitExceeded"]


@dataclass(frozen=True)
class AsIs:
    """An argument handed to the student without a copy and without a check for changes (e.g. a model to train)."""

    value: Any


@dataclass
class StudentCall:
    """What the student's function returned, and the arguments (copies) it was handed."""

    answer: Any
    args: tuple
    kwargs: dict


def call_student(fn: Callable, *args: Any, error_hints: Sequence[tuple[str, str]] = (), **kwargs: Any) -> Any:
    """Call ``fn`` on copies of the arguments; return its answer, or raise what went wrong (see the module doc).

    ``error_hints`` are ``(regex, hint)`` pairs matched against ``"ErrorName: message"`` of a student's exception.
    """
    return run_student(fn, *args, error_hints=error_hints, **kwargs).answer


def run_student(fn: Callable, *args: Any, error_hints: Sequence[tuple[str, str]] = (), **kwargs: Any) -> StudentCall:
    """Like :func:`call_student`, but also return the copies the student was handed (to compare identities)."""
    if not callable(fn):
        raise CheckFailure(f"expected a function, got {kind(fn)}: pass the function itself, without calling it "
                           "(no parentheses after its name).")
    originals = ([a for a in args], dict(kwargs))
    handed_args, handed_kwargs = copy.deepcopy(([_plain(a) for a in args], {k: _plain(v) for k, v in kwargs.items()}))
    handed_args = [a.value if isinstance(a, AsIs) else h for a, h in zip(args, handed_args)]
    handed_kwargs = {k: v.value if isinstance(v, AsIs) else handed_kwargs[k] for k, v in kwargs.items()}
    names = _bind(fn, handed_args, handed_kwargs)
    try:
        answer = fn(*handed_args, **handed_kwargs)
    except (TimeLimitExceeded, KeyboardInterrupt):
        raise
    except BaseException as error:  # noqa: BLE001 - the student's SystemExit must not end the kernel either
        raise _student_exception(error, error_hints) from None
    for name, original, handed in [*zip(names, originals[0], handed_args),
                                   *((k, originals[1][k], handed_kwargs[k]) for k in kwargs)]:
        if isinstance(original, AsIs):
            continue
        change = find_change(original, handed, name)
        if change:
            raise CheckFailure(f"your function changed its input `{name}`: {change}",
                               hint=f"the caller still needs its `{name}` as it was: build new lists / tensors "
                                    f"(e.g. `x.clone()`, `list(x)`) instead of changing the ones you were given.")
    return StudentCall(answer, tuple(handed_args), handed_kwargs)


def _plain(value: Any) -> Any:
    """Placeholder for AsIs arguments in the deep copy (they are not copied)."""
    return None if isinstance(value, AsIs) else value


def _bind(fn: Callable, args: list, kwargs: dict) -> list[str]:
    """The student's names of the positional arguments; a clear failure when the signature does not fit."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: name arguments by position
        return [f"argument {i + 1}" for i in range(len(args))]
    try:
        bound = signature.bind(*args, **kwargs).arguments
    except TypeError as exc:
        called = ", ".join([f"<{kind(a)}>" for a in args] + [f"{k}=..." for k in kwargs])
        raise CheckFailure(
            f"your function's signature does not accept the arguments the check passes ({exc}).",
            details=[f"Your signature: {getattr(fn, '__name__', 'fn')}{signature}", f"The check calls: fn({called})"],
            hint="keep the parameter names and order of the exercise's stub.",
        ) from None
    positional = [name for name, parameter in signature.parameters.items()
                  if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]
    names = [name for name in positional if name in bound][: len(args)]
    return names + [f"argument {i + 1}" for i in range(len(names), len(args))]


def _student_exception(error: BaseException, error_hints: Sequence[tuple[str, str]]) -> Exception:
    """NotAttempted for the stub's ``raise NotImplementedError``, otherwise a StudentError with the student's line."""
    frames = traceback.extract_tb(error.__traceback__)
    raising = frames[-1] if frames else None
    if (type(error) is NotImplementedError and raising is not None and not is_library(raising.filename)
            and ("NotImplementedError" in (raising.line or "") or not error.args)):
        return NotAttempted("the exercise still raises NotImplementedError: replace it with your code.")
    try:
        described = f"{type(error).__name__}: {error}".strip().rstrip(":")
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ fails
        described = type(error).__name__
    hint = next((text for pattern, text in error_hints if re.search(pattern, described)), None)
    frame = student_frame(frames)
    return StudentError(f"your code raised {described}", student_line=describe(frame) if frame else None, hint=hint)
