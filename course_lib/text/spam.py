"""The labelled target task: SMS spam detection (UCI SMS Spam Collection subset, CC BY 4.0; see data/README.md).

One fixed, stratified train/valid/test split that every notebook and grader uses. Labels: 0 = ham, 1 = spam.
The set is about 88% ham, so report spam F1 next to accuracy: always answering "ham" is already 88% accurate.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from course_lib.paths import data_path

LABELS = ("ham", "spam")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class LabelledTexts:
    """Parallel lists of messages and their labels (0 = ham, 1 = spam)."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.labels[i]

    @property
    def spam_fraction(self) -> float:
        return sum(self.labels) / max(len(self.labels), 1)

    def sample(self, n: int, seed: int = 0) -> "LabelledTexts":
        """A stratified random subset of ``n`` examples (same spam fraction), reproducible for a given seed."""
        chosen = stratified_indices(self.labels, n, seed)
        return LabelledTexts(tuple(self.texts[i] for i in chosen), tuple(self.labels[i] for i in chosen))


def stratified_indices(labels: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """Positions of a random subset of ``n`` of ``labels`` with the same spam fraction, reproducible for a seed.

    Works on any 0/1 label list, e.g. the labels that came back with cached features, so a smaller labelled set can
    be drawn again and again without recomputing anything.
    """
    labels = [int(y) for y in labels]
    if not 0 < n <= len(labels):
        raise ValueError(f"n must be between 1 and {len(labels)}, got {n}")
    if not set(labels) <= {0, 1}:
        raise ValueError(f"labels must be 0 (ham) or 1 (spam), got {sorted(set(labels))}")
    rng = random.Random(seed)
    by_label = {lab: [i for i, y in enumerate(labels) if y == lab] for lab in (0, 1)}
    n_spam = round(n * len(by_label[1]) / len(labels))
    chosen = rng.sample(by_label[1], n_spam) + rng.sample(by_label[0], n - n_spam)
    rng.shuffle(chosen)
    return chosen


@lru_cache(maxsize=None)
def _all_rows() -> tuple[tuple[str, str, str], ...]:
    with open(data_path("spam/sms_spam.csv"), encoding="utf-8", newline="") as f:
        return tuple((r["split"], r["label"], r["text"]) for r in csv.DictReader(f))


def load_spam(split: str = "train") -> LabelledTexts:
    """The messages of one split: ``"train"`` (3,174), ``"valid"`` (453) or ``"test"`` (907)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = [(text, LABELS.index(label)) for s, label, text in _all_rows() if s == split]
    return LabelledTexts(tuple(t for t, _ in rows), tuple(y for _, y in rows))
