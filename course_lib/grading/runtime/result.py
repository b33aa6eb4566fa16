"""What one check returns: an outcome, what was expected, what came back, and a hint.

A result renders as a coloured box in Jupyter (``_repr_html_``) and as plain text everywhere else (``str``/``repr``),
so nothing here needs IPython. Renders hold no timings or addresses: a stored output stays comparable under nbval.
"""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass, field


class Outcome(str, enum.Enum):
    """The five ways a check can end."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"
    ERROR = "error"
    TIMED_OUT = "timed_out"  # stopped at the check's time limit


# Box colours (border, background) and the label shown to the student, per outcome.
_STYLE = {
    Outcome.PASSED: ("#2e7d32", "#e8f5e9", "PASSED"),
    Outcome.FAILED: ("#c62828", "#ffebee", "FAILED"),
    Outcome.NOT_ATTEMPTED: ("#9e9e9e", "#f5f5f5", "NOT ATTEMPTED"),
    Outcome.ERROR: ("#ef6c00", "#fff3e0", "ERROR"),
    Outcome.TIMED_OUT: ("#6a1b9a", "#f3e5f5", "TIMED OUT"),
}


@dataclass
class CheckResult:
    """The verdict of one check: outcome, a one-sentence message, details (expected / got), and a hint.

    ``student_line`` is the line of the student's own code that raised (``error``) or where it was stopped (``timed
    out``); ``seed`` the seed the inputs were drawn with (None for fixed inputs).
    """

    name: str
    title: str
    outcome: Outcome
    message: str
    details: list[str] = field(default_factory=list)
    hint: str | None = None
    student_line: str | None = None
    points: float = 1.0
    seed: int | None = None

    @property
    def passed(self) -> bool:
        """True when the check passed."""
        return self.outcome is Outcome.PASSED

    @property
    def score(self) -> float:
        """Points earned: all of them when passed, none otherwise."""
        return self.points if self.passed else 0.0

    def to_record(self) -> dict:
        """A JSON-ready dict (one line of the COURSE_RESULTS file)."""
        return {
            "kind": "check",
            "check": self.name,
            "title": self.title,
            "outcome": self.outcome.value,
            "score": self.score,
            "points": self.points,
            "message": self.message,
            "details": list(self.details),
            "hint": self.hint,
            "student_line": self.student_line,
            "seed": self.seed,
        }

    @property
    def seed_line(self) -> str | None:
        """How to repeat the draw, for a result that did not pass on drawn inputs."""
        if self.seed is None or self.outcome in (Outcome.PASSED, Outcome.NOT_ATTEMPTED):
            return None
        return f"Inputs drawn with seed {self.seed}: check.{self.name}(..., seed={self.seed}) repeats them."

    def __str__(self) -> str:
        label = _STYLE[self.outcome][2]
        lines = [f"[{label}] {self.title}: {self.message}"]
        if self.student_line:
            lines.append(f"  Your code: {self.student_line}")
        lines += [f"  {line}" for detail in self.details for line in detail.splitlines()]
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        if self.seed_line:
            lines.append(f"  {self.seed_line}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        border, background, label = _STYLE[self.outcome]
        parts = [
            f'<div style="border-left: 6px solid {border}; background: {background}; color: #212121; '
            f'padding: 6px 10px; margin: 4px 0; font-family: sans-serif;">',
            f'<b style="color: {border};">{label}</b> <b>{html.escape(self.title)}</b>: {html.escape(self.message)}',
        ]
        if self.student_line:
            parts.append(f"<div>Your code: <code>{html.escape(self.student_line)}</code></div>")
        if self.details:
            parts.append(f'<pre style="margin: 4px 0; background: transparent;">'
                         f'{html.escape(chr(10).join(self.details))}</pre>')
        if self.hint:
            parts.append(f"<div><i>Hint:</i> {html.escape(self.hint)}</div>")
        if self.seed_line:
            parts.append(f'<div style="color: #616161;">{html.escape(self.seed_line)}</div>')
        parts.append("</div>")
        return "\n".join(parts)


@dataclass
class Summary:
    """The notebook's score: one result per exercise of the sheet (not run yet: not attempted), then any other check run."""

    results: list[CheckResult]

    @property
    def score(self) -> float:
        """Points earned."""
        return sum(result.score for result in self.results)

    @property
    def total(self) -> float:
        """Points available over the whole sheet."""
        return sum(result.points for result in self.results)

    def to_record(self) -> dict:
        """A JSON-ready dict (the summary line of the COURSE_RESULTS file)."""
        return {
            "kind": "summary",
            "score": self.score,
            "total": self.total,
            "outcomes": {result.name: result.outcome.value for result in self.results},
        }

    def __str__(self) -> str:
        if not self.results:
            return "Score: no checks were run yet."
        width = max(len(result.title) for result in self.results)
        lines = [f"Score: {_number(self.score)} / {_number(self.total)}"]
        for result in self.results:
            label = _STYLE[result.outcome][2]
            lines.append(f"  {result.title:<{width}}  {label}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if not self.results:
            return "<div><b>Score:</b> no checks were run yet.</div>"
        rows = []
        for result in self.results:
            border, background, label = _STYLE[result.outcome]
            rows.append(f'<tr><td style="text-align: left;">{html.escape(result.title)}</td>'
                        f'<td style="background: {background}; color: {border}; font-weight: bold;">{label}</td>'
                        f"<td>{_number(result.score)} / {_number(result.points)}</td></tr>")
        return (f"<div><b>Score: {_number(self.score)} / {_number(self.total)}</b>"
                f"<table>{''.join(rows)}</table></div>")


def _number(value: float) -> str:
    """Points as a short string: 3 rather than 3.0, 2.5 as it is."""
    return f"{value:g}"
