"""Classification metrics, written out so a student can read them. Positive class = 1 (spam)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BinaryMetrics:
    """Accuracy plus precision, recall and F1 of the positive class, and the confusion counts behind them."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    def __str__(self) -> str:
        return (f"accuracy {self.accuracy:.3f} | precision {self.precision:.3f} | recall {self.recall:.3f} | "
                f"F1 {self.f1:.3f}  (TP {self.true_positives}, FP {self.false_positives}, "
                f"FN {self.false_negatives}, TN {self.true_negatives})")

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall, "f1": self.f1}


def _as_list(values: Sequence[int] | torch.Tensor) -> list[int]:
    return [int(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def binary_metrics(y_true: Sequence[int] | torch.Tensor, y_pred: Sequence[int] | torch.Tensor) -> BinaryMetrics:
    """Accuracy, precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = their harmonic mean (0 when undefined)."""
    truth, pred = _as_list(y_true), _as_list(y_pred)
    if len(truth) != len(pred):
        raise ValueError(f"y_true has {len(truth)} labels but y_pred has {len(pred)}")
    if not truth:
        raise ValueError("no labels to score")
    if not set(truth) | set(pred) <= {0, 1}:
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(truth) | set(pred))}")
    tp = sum(t == 1 and p == 1 for t, p in zip(truth, pred))
    fp = sum(t == 0 and p == 1 for t, p in zip(truth, pred))
    fn = sum(t == 1 and p == 0 for t, p in zip(truth, pred))
    tn = len(truth) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics((tp + tn) / len(truth), precision, recall, f1, tp, fp, fn, tn)


def accuracy(y_true: Sequence[int] | torch.Tensor, y_pred: Sequence[int] | torch.Tensor) -> float:
    """The fraction of predictions equal to the label (any number of classes)."""
    truth, pred = _as_list(y_true), _as_list(y_pred)
    if len(truth) != len(pred) or not truth:
        raise ValueError(f"need two equally long, non-empty label lists, got {len(truth)} and {len(pred)}")
    return sum(t == p for t, p in zip(truth, pred)) / len(truth)
