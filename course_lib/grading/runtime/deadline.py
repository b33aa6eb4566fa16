"""A time limit that really stops the student's Python code, and leaves nothing running behind it.

    with time_limit(30) as deadline:      # everything in the block: the student's calls and the check's own work
        ...
    deadline.expired                      # True when the block was stopped (or ran past its time)

In the main thread (where Jupyter runs cells) a ``SIGALRM`` timer (``signal.setitimer``) raises
:class:`TimeLimitExceeded` where the code is. It is a ``BaseException``, so ``except Exception`` in the student's code
does not swallow it; until the block exits the alarm repeats every ``REPEAT_SECONDS``, and a trace function raises it
again at the next line of the student's own code (their ``except`` block included), so a loop around
``except BaseException: pass`` stops too.
Elsewhere (another thread, or Windows, which has no ``setitimer``) a watchdog thread raises it in the checked thread
with ``PyThreadState_SetAsyncExc``, repeatedly; in the main thread the same watchdog is a backstop ``BACKSTOP_SECONDS``
after the deadline (should the student's code replace the ``SIGALRM`` handler). The watchdog is joined when the block
exits: nothing keeps running after a check.

Limits: code stuck in one long C call (a huge matrix product, a blocking read) is stopped only when that call
returns to Python. A student who calls ``os._exit``, kills the process or crashes the interpreter (a segfault in an
extension) ends the kernel itself: nothing inside the kernel can catch that (the re-grade runs each notebook in its
own process and reports it). Student code that replaces the ``SIGALRM`` handler and also catches every exception in a
loop may run on: in-kernel checks are feedback, the re-grade is the grade.
"""

from __future__ import annotations

import ctypes
import dis
import signal
import sys
import threading
import time
from functools import lru_cache
from types import CodeType, FrameType
from typing import Any

from course_lib.grading.runtime.frames import is_library

REPEAT_SECONDS = 0.2  # after the deadline, raise again this often until the block exits
BACKSTOP_SECONDS = 1.0  # in the main thread, the watchdog also steps in this long after the deadline


class TimeLimitExceeded(BaseException):
    """The check's time is up (a BaseException: ``except Exception`` in the student's code cannot swallow it)."""

    def __str__(self) -> str:
        # Raised by the watchdog as a bare class (no message): name the limit that expired last.
        return super().__str__() or f"took longer than {_LAST_EXPIRED[-1]:g} s"


_LAST_EXPIRED: list[float] = [0.0]  # the length of the deadline that expired last
_ACTIVE: list[Deadline] = []  # the main thread's running deadlines, outermost first
_SAVED: dict[str, Any] = {}  # SIGALRM's handler and timer before the first deadline, the trace function in use
_HANDLING: list[bool] = [False]  # True while the alarm handler runs: an alarm arriving meanwhile is dropped
_PROTECTED: set[CodeType] = set()  # the grader's own bookkeeping: no time-out while one of these runs
_OWN_FRAME: set[CodeType] = set()  # the grader's wrappers: no time-out in their own frame (their callees may get one)


def protect(function: Any) -> Any:
    """Decorator: never raise the time-out while ``function`` runs (its callees included): the grader's cleanup."""
    _PROTECTED.add(function.__code__)
    return function


def protect_own_frame(function: Any) -> Any:
    """Decorator: never raise the time-out in ``function``'s own frame (it wraps the student's code and reports)."""
    _OWN_FRAME.add(function.__code__)
    return function


@protect
def _grader_busy(frame: FrameType | None) -> bool:
    """True when ``frame`` belongs to the grader's own bookkeeping: the time-out must wait for the next alarm."""
    if frame is not None and frame.f_code in _OWN_FRAME:
        return True
    while frame is not None:
        if frame.f_code in _PROTECTED:
            return True
        frame = frame.f_back
    return False


class Deadline:
    """One running time limit: its length in seconds, when it ends (``time.monotonic``) and whether it expired."""

    @protect
    def __init__(self, seconds: float):
        self.seconds, self.end, self.expired = seconds, time.monotonic() + seconds, False

    @protect
    def expire(self) -> None:
        """Mark this deadline expired (and remember its length for the message)."""
        if not self.expired:
            _LAST_EXPIRED[-1] = self.seconds
        self.expired = True

    @protect
    def remaining(self) -> float:
        return self.end - time.monotonic()


@protect
def _first_expired() -> Deadline | None:
    for deadline in _ACTIVE:
        if deadline.expired:
            return deadline
    return None


def _main_thread_alarm() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


class time_limit:  # noqa: N801 - used like a function: ``with time_limit(30):``
    """Context manager: stop the block after ``seconds`` (None: no new limit; an enclosing one still applies)."""

    def __init__(self, seconds: float | None):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a time limit must be positive seconds or None, got {seconds!r}")
        self.seconds = seconds
        self.deadline: Deadline | None = None
        self._watchdog: _Watchdog | None = None

    @protect
    def __enter__(self) -> Deadline | None:
        if self.seconds is None:
            return None
        self.deadline = Deadline(self.seconds)
        delay = self.seconds
        if _main_thread_alarm():
            if not _ACTIVE:
                _SAVED["handler"] = signal.signal(signal.SIGALRM, _on_alarm)
                _SAVED["timer"] = signal.setitimer(signal.ITIMER_REAL, 0)
                _SAVED["timer_taken"] = time.monotonic()
            _ACTIVE.append(self.deadline)
            _arm()
            delay += BACKSTOP_SECONDS  # a backstop, should the student's code replace the SIGALRM handler
        self._watchdog = _Watchdog(self.deadline, threading.get_ident(), delay)
        self._watchdog.start()
        return self.deadline

    @protect
    def __exit__(self, *exc_info: object) -> bool:
        if self.deadline is None:
            return False
        if self.deadline in _ACTIVE:
            _ACTIVE.remove(self.deadline)
            if _ACTIVE:
                _arm()
            else:
                _release_alarm()
        if self._watchdog is not None:
            self._watchdog.finish()
        if self.deadline.remaining() <= 0:
            self.deadline.expire()  # the block ran past its time without being stopped (e.g. in one long C call)
        return False


@protect
def _arm() -> None:
    """Set the timer for the nearest deadline, or to repeat every REPEAT_SECONDS once one has expired."""
    if _first_expired() is not None:
        signal.setitimer(signal.ITIMER_REAL, REPEAT_SECONDS, REPEAT_SECONDS)
        return
    nearest = _ACTIVE[0].remaining()
    for deadline in _ACTIVE:
        nearest = min(nearest, deadline.remaining())
    signal.setitimer(signal.ITIMER_REAL, max(nearest, 1e-4))


@protect
def _release_alarm() -> None:
    """No deadline left: stop the timer and tracing, give back SIGALRM's previous handler and timer."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    _stop_tracing()
    signal.signal(signal.SIGALRM, _SAVED.pop("handler", signal.SIG_DFL))
    previous, taken = _SAVED.pop("timer", (0.0, 0.0)), _SAVED.pop("timer_taken", time.monotonic())
    if previous[0] > 0:  # someone else's timer was running: let it continue where it was
        signal.setitimer(signal.ITIMER_REAL, max(previous[0] - (time.monotonic() - taken), 1e-3), previous[1])


@protect
def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """SIGALRM: mark due deadlines expired, and raise in the interrupted code unless it is the grader's own."""
    if not _ACTIVE or _HANDLING[0]:
        return
    _HANDLING[0] = True
    try:
        for deadline in _ACTIVE:
            if deadline.remaining() <= 1e-3:
                deadline.expire()
        _arm()
        expired = _first_expired()
        if expired is None or _grader_busy(frame):
            return
        _start_tracing(frame)
    finally:
        _HANDLING[0] = False
    raise TimeLimitExceeded(f"took longer than {expired.seconds:g} s")


@protect
def _start_tracing(frame: FrameType | None) -> None:
    """Trace the student's frames so the next line they run raises again (a trace that raises is switched off)."""
    if sys.gettrace() is not _trace_call:
        _SAVED.setdefault("trace", sys.gettrace())
        sys.settrace(_trace_call)
    while frame is not None:
        if not is_library(frame.f_code.co_filename):
            frame.f_trace = _trace_line
        frame = frame.f_back


@protect
def _stop_tracing() -> None:
    if "trace" in _SAVED:
        sys.settrace(_SAVED.pop("trace"))


@protect
def _trace_call(frame: FrameType, event: str, arg: object) -> Any:
    """Global trace function: trace lines only in the student's own code."""
    return None if is_library(frame.f_code.co_filename) else _trace_line


@lru_cache(maxsize=512)
def _exit_calls(code: CodeType) -> frozenset[int]:
    """Offsets in ``code`` from which a ``with`` statement is about to call ``__exit__`` after an exception."""
    instructions = list(dis.get_instructions(code))
    return frozenset(before.offset for i, instruction in enumerate(instructions)
                     if instruction.opname == "WITH_EXCEPT_START" for before in instructions[max(0, i - 3) : i + 1])


@protect
def _trace_line(frame: FrameType, event: str, arg: object) -> Any:
    """Local trace function: raise the time-out again at each line of the student's code (their ``except`` included).

    Not where a ``with`` block is about to call ``__exit__``: ``with torch.no_grad():`` must restore what it changed.
    """
    expired = _first_expired() if event == "line" else None
    if expired is not None and frame.f_lasti not in _exit_calls(frame.f_code):
        raise TimeLimitExceeded(f"took longer than {expired.seconds:g} s")
    return _trace_line


@protect
def _raise_in(thread: int) -> None:
    """Raise TimeLimitExceeded in ``thread`` at its next check (a jump, a call, a line)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(TimeLimitExceeded))


def _checkpoint() -> None:
    """An empty call: a place where Python raises an exception another thread asked for."""


class _Watchdog(threading.Thread):
    """Raise TimeLimitExceeded in the checked thread after ``delay`` seconds, then repeatedly; joined at the exit."""

    def __init__(self, deadline: Deadline, target: int, delay: float):
        super().__init__(name="course-check-watchdog", daemon=True)
        self.deadline, self.target, self.delay, self.done = deadline, target, delay, threading.Event()
        self.fired = False

    def run(self) -> None:
        if self.done.wait(self.delay):
            return
        self.deadline.expire()
        self.fired = True
        while not self.done.is_set():
            _raise_in(self.target)
            self.done.wait(REPEAT_SECONDS)

    @protect
    def finish(self) -> None:
        """Stop and join the watchdog; let an exception it set but that was not raised yet be raised, and catch it.

        (Withdrawing it with ``PyThreadState_SetAsyncExc(thread, NULL)`` would leave CPython 3.11's eval breaker
        set for good, which hangs a later trace function.)
        """
        self.done.set()
        self.join()
        if self.fired:
            try:
                _checkpoint()
                _checkpoint()
            except TimeLimitExceeded:
                pass
