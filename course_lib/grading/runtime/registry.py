"""The ``check`` object notebooks call, the one registry of checks, modes, the results file and the score.

A check is a plain function decorated with :func:`register` in its notebook's module under ``checks/``. It returns a short
"passed" sentence or raises one of the runner's exceptions; the registry runs the whole check under its time limit
(``deadline``), turns what happened into a :class:`CheckResult`, keeps the latest result per check for
:meth:`CheckBook.summary`, and never lets the student's mistake crash the kernel. A check whose ``seed`` defaults to
None gets a fresh seed at every call (named in its result, so the student can repeat the draw with ``seed=``).

The exercise sheet: the setup cell names the notebook's checks, ``check.sheet("02_bert", ["mlm_masking",
"fine_tuning"])``, so ``check.summary()`` lists all of them (those not run yet as "not attempted") in a released
notebook where nothing has run.

Environment variables (read at every call):

- ``COURSE_STRICT=1``: strict mode (testing instructor notebooks): a check that does not pass raises
  :class:`CheckFailedError`. Default: feedback mode, the result is only shown.
- ``COURSE_RESULTS=path``: append one JSON line per check (and per summary) to ``path``, for instructors.
- ``COURSE_NOTEBOOK=name``: the notebook name written to those lines (default: Jupyter's ``JPY_SESSION_NAME``).
"""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import os
import traceback
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from course_lib.grading.runtime.deadline import TimeLimitExceeded, protect_own_frame, time_limit
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError, NotAttempted, StudentError
from course_lib.grading.runtime.frames import describe, student_frame
from course_lib.grading.runtime.inputs import resolve_seed
from course_lib.grading.runtime.result import CheckResult, Outcome, Summary

_SESSION = uuid.uuid4().hex[:12]  # tells apart two runs of the same notebook in one results file
DEFAULT_TIME_LIMIT = 30.0  # seconds for a whole check: the student's calls and the check's own work
_DEFAULT = object()  # "no time_limit= given": the check's own default


class CheckFailedError(AssertionError):
    """Raised in strict mode when a check does not pass."""


@dataclass(frozen=True)
class CheckSpec:
    """One registered check: its name (the attribute on ``check``), title, points, function and time limit.

    ``time_limit=None`` means the check sets its own (it receives the caller's ``time_limit=`` as an argument).
    """

    name: str
    title: str
    points: float
    function: Callable[..., str | None]
    time_limit: float | None = DEFAULT_TIME_LIMIT
    timeout_hint: str = ("look for a loop whose condition never changes (an endless loop), or work that grows much "
                         "faster than the exercise needs.")

    @property
    def draws_seed(self) -> bool:
        """True when the check takes ``seed=None`` (draw fresh inputs at every call)."""
        parameter = inspect.signature(self.function).parameters.get("seed")
        return parameter is not None and parameter.default is None


_REGISTRY: dict[str, CheckSpec] = {}  # private: read it through specs(); the re-grade flags student code naming it
PRIVATE_NAME = "_REGISTRY"


def specs() -> MappingProxyType[str, CheckSpec]:
    """Every registered check by name, read-only (the re-grade and the reports read points and titles here)."""
    return MappingProxyType(_REGISTRY)


def unregister(name: str) -> None:
    """Forget check ``name`` (tests register throw-away checks); an unknown name is a usage error."""
    if name not in _REGISTRY:
        raise CheckUsageError(f"no check named {name!r}")
    del _REGISTRY[name]


def register(name: str, *, title: str, points: float = 1.0, time_limit: float | None = DEFAULT_TIME_LIMIT,
             timeout_hint: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: make ``function`` available as ``check.<name>``; it returns a pass message or raises."""
    if not name.isidentifier():
        raise ValueError(f"check name must be a Python identifier, got {name!r}")
    if points <= 0:
        raise ValueError(f"points must be positive, got {points}")
    if time_limit is not None and time_limit <= 0:
        raise ValueError(f"time_limit must be positive seconds or None, got {time_limit}")

    def decorate(function: Callable) -> Callable:
        if name in _REGISTRY or name in _RESERVED:
            raise ValueError(f"check {name!r} is already registered (or reserved)")
        extra = {"timeout_hint": timeout_hint} if timeout_hint else {}
        _REGISTRY[name] = CheckSpec(name, title, float(points), function, time_limit, **extra)
        return function

    return decorate


def strict_mode() -> bool:
    """True when ``COURSE_STRICT`` is set to 1/true/yes."""
    return os.environ.get("COURSE_STRICT", "").strip().lower() in {"1", "true", "yes"}


def grade(name: str, *args: Any, time_limit: float | None | object = _DEFAULT, **kwargs: Any) -> CheckResult:
    """Run check ``name`` once and return its result: nothing is remembered, written, or raised in strict mode.

    The re-grade calls this in a fresh process, e.g. ``grade("fine_tuning", fine_tune, task=..., seed=...)``.
    Only a wrong call (unknown check, invalid arguments) raises :class:`CheckUsageError`.
    """
    if name not in _REGISTRY:
        raise CheckUsageError(f"no check named {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    spec = _REGISTRY[name]
    if spec.time_limit is None:
        kwargs["time_limit"] = None if time_limit is _DEFAULT else time_limit
        limit = None
    else:
        limit = spec.time_limit if time_limit is _DEFAULT else time_limit
        if limit is None or not isinstance(limit, (int, float)) or limit <= 0:
            raise CheckUsageError(f"time_limit must be positive seconds (every check runs under a limit), got {limit!r}")
    if spec.draws_seed:
        kwargs["seed"] = _seed(kwargs.get("seed"))
    return run_check(spec, args, kwargs, limit)


def _seed(seed: Any) -> int:
    try:
        return resolve_seed(seed)
    except ValueError as exc:
        raise CheckUsageError(str(exc)) from None



@protect_own_frame
def run_check(spec: CheckSpec, args: tuple, kwargs: dict, limit: float | None) -> CheckResult:
    """Run one check under its time limit; turn whatever happens into a CheckResult (usage errors alone are raised)."""
    make = functools.partial(CheckResult, spec.name, spec.title, points=spec.points, seed=kwargs.get("seed"))
    grad_enabled = torch.is_grad_enabled()
    guard = time_limit(limit)
    try:
        try:
            with guard:
                message = spec.function(*args, **kwargs)
        finally:
            torch.set_grad_enabled(grad_enabled)  # a time-out may stop the check inside `with torch.no_grad():`
        result = make(Outcome.PASSED, message or "all tests passed.")
    except CheckUsageError:
        raise
    except TimeLimitExceeded as stop:
        frame = student_frame(traceback.extract_tb(stop.__traceback__))  # where the student's code was stopped
        result = make(Outcome.TIMED_OUT, f"{stop}: stopped.",
                      student_line=None if frame is None else describe(frame), hint=spec.timeout_hint)
    except NotAttempted as stop:
        result = make(Outcome.NOT_ATTEMPTED, str(stop))
    except StudentError as stop:
        result = make(Outcome.ERROR, stop.message, student_line=stop.student_line, hint=stop.hint)
    except CheckFailure as stop:
        result = make(Outcome.FAILED, stop.message, details=stop.details, hint=stop.hint)
    except Exception as exc:  # noqa: BLE001 - an unexpected answer must not crash the kernel
        frame = student_frame(traceback.extract_tb(exc.__traceback__))
        result = make(Outcome.ERROR, f"the check could not handle your answer ({type(exc).__name__}: {exc}).",
                      student_line=None if frame is None else describe(frame),
                      hint="compare what your function returns with the exercise's description.")
    if guard.deadline is not None and guard.deadline.expired and result.outcome is not Outcome.TIMED_OUT:
        result = make(Outcome.TIMED_OUT, f"took longer than {limit:g} s: the answer came back after the limit.",
                      hint=spec.timeout_hint)
    return result


class CheckBook:
    """``check.<name>(...)`` runs a registered check; ``check.summary()`` shows the score of the exercise sheet."""

    def __init__(self) -> None:
        self._latest: dict[str, CheckResult] = {}
        self._sheet: list[str] = []
        self._notebook: str = ""

    def __getattr__(self, name: str) -> Callable[..., CheckResult]:
        if name.startswith("_") or name not in _REGISTRY:
            raise AttributeError(f"no check named {name!r}; available: {', '.join(sorted(_REGISTRY))}")
        spec = _REGISTRY[name]

        @functools.wraps(spec.function)
        def run(*args: Any, time_limit: float | None | object = _DEFAULT, **kwargs: Any) -> CheckResult:
            return self._finish(grade(name, *args, time_limit=time_limit, **kwargs))

        return run

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_REGISTRY))

    def sheet(self, notebook: str, names: Sequence[str]) -> None:
        """Declare the notebook's exercise sheet: its name and its checks, in order (the setup cell calls this)."""
        if type(notebook) is not str or not notebook:
            raise CheckUsageError(f"notebook must be a non-empty string, got {notebook!r}")
        unknown = [name for name in names if name not in _REGISTRY]
        if unknown or isinstance(names, str) or len(set(names)) != len(names):
            raise CheckUsageError(f"the sheet must list registered checks once each; unknown: {unknown}, "
                                  f"available: {', '.join(sorted(_REGISTRY))}")
        self._notebook, self._sheet = notebook, list(names)

    def _finish(self, result: CheckResult) -> CheckResult:
        """Remember the result, append it to the results file, and raise in strict mode unless it passed."""
        self._latest[result.name] = result
        _append_record(result.to_record(), self._notebook)
        if strict_mode() and not result.passed:
            raise CheckFailedError(f"strict mode (COURSE_STRICT=1):\n{result}")
        return result

    def summary(self) -> Summary:
        """The score over the whole sheet (checks not run yet count as not attempted), also written to the file."""
        results = [self._latest.get(name) or _not_run(name) for name in self._sheet]
        results += [result for name, result in self._latest.items() if name not in self._sheet]
        summary = Summary(results)
        _append_record(summary.to_record(), self._notebook)
        return summary

    def results(self) -> list[CheckResult]:
        """The latest result of every check run so far."""
        return list(self._latest.values())

    def reset(self) -> None:
        """Forget every result and the sheet (the score starts again from zero)."""
        self._latest.clear()
        self._sheet, self._notebook = [], ""

    def available(self) -> dict[str, str]:
        """Registered check names -> titles."""
        return {name: spec.title for name, spec in sorted(_REGISTRY.items())}


_RESERVED = {name for name in dir(CheckBook) if not name.startswith("_")}


def _not_run(name: str) -> CheckResult:
    spec = _REGISTRY[name]
    return CheckResult(name, spec.title, Outcome.NOT_ATTEMPTED, "not run yet.", points=spec.points)


def _append_record(record: dict, notebook: str = "") -> None:
    """Append one JSON line to ``$COURSE_RESULTS`` when it is set; a write error is a warning, never a crash."""
    path = os.environ.get("COURSE_RESULTS", "").strip()
    if not path:
        return
    record = {
        "notebook": os.environ.get("COURSE_NOTEBOOK") or os.environ.get("JPY_SESSION_NAME") or notebook,
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
