"""How a check ends other than passing: the exceptions a check raises and the registry turns into a result."""

from __future__ import annotations

from collections.abc import Sequence


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


class CheckUsageError(ValueError):
    """The notebook called a check with invalid arguments (the author's mistake, not the student's)."""
