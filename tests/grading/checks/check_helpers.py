"""What the check tests share: feedback mode (no strict grading, no results file, a fresh sheet) and ``expect``.

    from check_helpers import expect, feedback_mode  # noqa: F401  (importing the fixture switches it on)
"""

import pytest

from course_lib.grading import check


@pytest.fixture(autouse=True)
def feedback_mode(monkeypatch):
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    check.reset()


def expect(result, outcome, message=None, hint=None):
    """Assert the outcome, and that ``message`` occurs in the rendered result and ``hint`` in its hint."""
    assert result.outcome is outcome, str(result)
    if message is not None:
        assert message in str(result), str(result)
    if hint is not None:
        assert result.hint is not None and hint in result.hint, str(result)
