"""What the check tests share: feedback mode (no strict grading, no results file, a fresh sheet) and ``expect``;
for the fine-tuning checks also a one-thread feedback mode, the tiny spam task's arguments and its reference.

    from check_helpers import expect, feedback_mode  # noqa: F401  (importing the fixture switches it on)
    from check_helpers import TINY, expect, one_thread_feedback_mode, train  # noqa: F401  (fine-tuning tests)
"""

import pytest
import torch

from course_lib.grading import check
from course_lib.training.loop import fit

TINY = dict(task="tiny-spam-256", min_accuracy=0.95, min_f1=0.85, max_epochs=4)


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


@pytest.fixture
def one_thread_feedback_mode(monkeypatch):
    """Feedback mode; one CPU thread (tiny models are slower on two threads of a busy machine)."""
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    check.reset()
    yield
    torch.set_num_threads(threads)


def train(model, batches, epochs=4, lr=1e-2):
    """The tiny task's reference: AdamW, 4 epochs."""
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=lr), epochs=epochs, progress=False)
    return model
