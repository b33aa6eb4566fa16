"""Check for the notebooks' final fine-tuning exercise: test accuracy and spam F1 above thresholds, within a budget.

The spam set is about 87% ham, so a model that always answers "ham" already scores ~87% accuracy with spam F1 = 0;
the check prints that baseline next to the student's numbers. Spam is the positive class (label 1).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from course_lib.grading.registry import CheckUsageError, register
from course_lib.metrics import binary_metrics
from course_lib.grading.runner import CheckFailure, NotAttempted, call_student, time_limit


@register("classifier_metrics", title="Fine-tuned classifier: accuracy and spam F1")
def classifier_metrics(y_true: Any, y_pred: Any, *, min_accuracy: float, min_f1: float,
                       budget_seconds: float | None = None, seconds: float | None = None) -> str:
    """Grade predicted labels (or a no-argument function returning them, timed here) against ``y_true``.

    ``seconds`` is the training time the student measured; when ``y_pred`` is a function the check measures it and
    allows it ``4 * budget_seconds`` before giving up (no limit without a budget).
    """
    for name, value in (("min_accuracy", min_accuracy), ("min_f1", min_f1)):
        if not 0.0 <= value <= 1.0:
            raise CheckUsageError(f"{name} must be in [0, 1], got {value}")
    if budget_seconds is not None and budget_seconds <= 0:
        raise CheckUsageError(f"budget_seconds must be positive, got {budget_seconds}")
    if y_true is None:
        raise CheckUsageError("y_true is None: pass the test labels")
    truth = torch.as_tensor(y_true).long().flatten()
    if len(truth) == 0 or not set(truth.unique().tolist()) <= {0, 1}:
        raise CheckUsageError("y_true must be a non-empty list of 0 (ham) / 1 (spam) labels")
    if callable(y_pred):
        start = time.perf_counter()
        with time_limit(None if budget_seconds is None else 4 * budget_seconds):
            y_pred = call_student(y_pred)
        seconds = time.perf_counter() - start
    if y_pred is None:
        raise NotAttempted("no predictions yet (None): run your fine-tuning first.")
    predicted = _labels(y_pred, len(truth))

    if not set(predicted.unique().tolist()) <= {0, 1}:
        raise CheckFailure(f"predictions must be 0 (ham) or 1 (spam), got {sorted(predicted.unique().tolist())[:6]}.",
                           hint="predict the class id, e.g. logits.argmax(dim=-1).")
    metrics = binary_metrics(truth, predicted)
    accuracy, precision, recall, f1 = metrics.accuracy, metrics.precision, metrics.recall, metrics.f1
    baseline = float((truth == 0).float().mean())  # accuracy of always answering "ham"
    report = [f"accuracy  {accuracy:.4f}   (needed >= {min_accuracy:.4f}; always-ham baseline {baseline:.4f})",
              f"spam F1   {f1:.4f}   (needed >= {min_f1:.4f}; precision {precision:.4f}, recall {recall:.4f})"]
    if seconds is not None:
        budget = "" if budget_seconds is None else f" (budget {budget_seconds:g} s)"
        report.append(f"time      {seconds:.1f} s{budget}")

    if accuracy < min_accuracy or f1 < min_f1:
        hint = ("your model answers 'ham' for (almost) every message: check the learning rate, train longer, and "
                "make sure the labels reach the loss." if int(predicted.sum()) <= 0.01 * len(truth)
                else "train a little longer, tune the learning rate, or unfreeze more layers.")
        raise CheckFailure("below the threshold " + ("(accuracy and F1)." if accuracy < min_accuracy and f1 < min_f1
                           else "(accuracy)." if accuracy < min_accuracy else "(spam F1)."), details=report, hint=hint)
    if budget_seconds is not None and seconds is not None and seconds > budget_seconds:
        raise CheckFailure(f"good scores, but training took {seconds:.1f} s, over the {budget_seconds:g} s budget.",
                           details=report, hint="fewer epochs, a shorter max_length, or freezing lower layers.")
    return f"accuracy {accuracy:.4f} (always-ham {baseline:.4f}), spam F1 {f1:.4f}."


def _labels(y_pred: Any, expected_length: int) -> torch.Tensor:
    """Predictions as a 1-D long tensor of class ids; a clear failure for logits, wrong lengths or odd types."""
    try:
        predicted = torch.as_tensor(y_pred)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckFailure(f"predictions should be a list or tensor of class ids, got {type(y_pred).__name__} ({exc}).",
                           hint="collect the predicted class ids, e.g. logits.argmax(dim=-1).") from None
    if predicted.dim() == 2 and predicted.shape[0] == expected_length:
        raise CheckFailure(f"predictions have shape {list(predicted.shape)}: these look like scores per class.",
                           hint="take the class with the largest score: logits.argmax(dim=-1).")
    predicted = predicted.flatten()
    if len(predicted) != expected_length:
        raise CheckFailure(f"{len(predicted)} predictions for {expected_length} test labels.",
                           hint="predict every test example once, in order (no shuffling of the test loader).")
    if predicted.is_floating_point() and not bool((predicted == predicted.round()).all()):
        raise CheckFailure("predictions are fractions, not class ids.",
                           hint="take the class with the largest score: logits.argmax(dim=-1).")
    return predicted.long()
