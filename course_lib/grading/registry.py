"""The ``check`` object notebooks call, the one registry of checks, modes, the results file and the score.

A check is a plain function decorated with :func:`register` in a small ``checks_*.py`` module. It returns a short
"passed" sentence or raises one of the runner's exceptions; the registry turns that into a :class:`CheckResult`,
keeps the latest result per check for :meth:`CheckBook.summary`, and never lets the student's mistake crash the kernel.

Environment variables (read at every call):

- ``COURSE_STRICT=1``: strict mode (testing instructor notebooks): a check that does not pass raises
  :class:`CheckFailedError`. Default: feedback mode, the result is only shown.
- ``COURSE_RESULTS=path``: append one JSON line per check (and per summary) to ``path``, for instructors.
- ``COURSE_NOTEBOOK=name``: the notebook name written to those lines (default: Jupyter's ``JPY_SESSION_NAME``).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from course_lib.grading.result import CheckResult, Outcome, Summary
from course_lib.grading.runner import (DEFAULT_TIME_LIMIT, CheckFailure, NotAttempted, StudentError, student_frame,
                                       time_limit)

_SESSION = uuid.uuid4().hex[:12]  # tells apart two runs of the same notebook in one results file


class CheckFailedError(AssertionError):
    """Raised in strict mode when a check does not pass."""


class CheckUsageError(ValueError):
    """The notebook called a check with invalid arguments (the author's mistake, not the student's)."""


@dataclass(frozen=True)
class CheckSpec:
    """One registered check: its name (the attribute on ``check``), title, points and function."""

    name: str
    title: str
    points: float
    function: Callable[..., str | None]


_REGISTRY: dict[str, CheckSpec] = {}


def register(name: str, *, title: str, points: float = 1.0) -> Callable[[Callable], Callable]:
    """Decorator: make ``function`` available as ``check.<name>``; it returns a pass message or raises."""
    if not name.isidentifier():
        raise ValueError(f"check name must be a Python identifier, got {name!r}")
    if points <= 0:
        raise ValueError(f"points must be positive, got {points}")

    def decorate(function: Callable) -> Callable:
        if name in _REGISTRY or name in _RESERVED:
            raise ValueError(f"check {name!r} is already registered (or reserved)")
        _REGISTRY[name] = CheckSpec(name, title, float(points), function)
        return function

    return decorate


def strict_mode() -> bool:
    """True when ``COURSE_STRICT`` is set to 1/true/yes."""
    return os.environ.get("COURSE_STRICT", "").strip().lower() in {"1", "true", "yes"}


def run_check(spec: CheckSpec, args: tuple, kwargs: dict, limit: float | None) -> CheckResult:
    """Run one check and turn whatever happens into a CheckResult (usage errors alone are raised)."""
    make = functools.partial(CheckResult, spec.name, spec.title, points=spec.points)
    try:
        with time_limit(limit):
            message = spec.function(*args, **kwargs)
        return make(Outcome.PASSED, message or "all tests passed.")
    except CheckUsageError:
        raise
    except NotAttempted as stop:
        return make(Outcome.NOT_ATTEMPTED, str(stop))
    except StudentError as stop:
        return make(Outcome.ERROR, stop.message, student_line=stop.student_line, hint=stop.hint)
    except CheckFailure as stop:
        return make(Outcome.FAILED, stop.message, details=stop.details, hint=stop.hint)
    except Exception as exc:  # noqa: BLE001 - an unexpected answer must not crash the kernel
        frame = student_frame(traceback.extract_tb(exc.__traceback__))
        return make(Outcome.ERROR, f"the check could not handle your answer ({type(exc).__name__}: {exc}).",
                    student_line=None if frame is None else f"{frame.name}: {(frame.line or '').strip()}",
                    hint="compare what your function returns with the exercise's description.")


class CheckBook:
    """``check.<name>(...)`` runs a registered check; ``check.summary()`` shows the score so far."""

    def __init__(self) -> None:
        self._latest: dict[str, CheckResult] = {}

    def __getattr__(self, name: str) -> Callable[..., CheckResult]:
        if name.startswith("_") or name not in _REGISTRY:
            raise AttributeError(f"no check named {name!r}; available: {', '.join(sorted(_REGISTRY))}")
        spec = _REGISTRY[name]

        @functools.wraps(spec.function)
        def run(*args: Any, time_limit: float | None = DEFAULT_TIME_LIMIT, **kwargs: Any) -> CheckResult:
            return self._finish(run_check(spec, args, kwargs, time_limit))

        return run

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_REGISTRY))

    def _finish(self, result: CheckResult) -> CheckResult:
        """Remember the result, append it to the results file, and raise in strict mode unless it passed."""
        self._latest[result.name] = result
        _append_record(result.to_record())
        if strict_mode() and not result.passed:
            raise CheckFailedError(f"strict mode (COURSE_STRICT=1):\n{result}")
        return result

    def summary(self) -> Summary:
        """The score: the latest result of every check run in this kernel (also appended to the results file)."""
        summary = Summary(list(self._latest.values()))
        _append_record(summary.to_record())
        return summary

    def results(self) -> list[CheckResult]:
        """The latest result of every check run so far."""
        return list(self._latest.values())

    def reset(self) -> None:
        """Forget every result (the score starts again from zero)."""
        self._latest.clear()

    def available(self) -> dict[str, str]:
        """Registered check names -> titles."""
        return {name: spec.title for name, spec in sorted(_REGISTRY.items())}


_RESERVED = {name for name in dir(CheckBook) if not name.startswith("_")}


def _append_record(record: dict) -> None:
    """Append one JSON line to ``$COURSE_RESULTS`` when it is set; a write error is a warning, never a crash."""
    path = os.environ.get("COURSE_RESULTS", "").strip()
    if not path:
        return
    record = {
        "notebook": os.environ.get("COURSE_NOTEBOOK") or os.environ.get("JPY_SESSION_NAME") or "",
        "session": _SESSION,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **record,
    }
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
    except OSError as exc:
        warnings.warn(f"could not write the check result to COURSE_RESULTS={path}: {exc}", stacklevel=3)


check = CheckBook()
