"""The labelled target task: SMS spam detection (UCI SMS Spam Collection subset, CC BY 4.0; see data/README.md).

One fixed, stratified train/valid/test split that every notebook and grader uses. Labels: 0 = ham, 1 = spam.
The set is about 88% ham, so report spam F1 next to accuracy: always answering "ham" is already 88% accurate.
"""

from __future__ import annotations

import csv
import random
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
        if not 0 < n <= len(self):
            raise ValueError(f"n must be between 1 and {len(self)}, got {n}")
        rng = random.Random(seed)
        by_label = {lab: [i for i, y in enumerate(self.labels) if y == lab] for lab in (0, 1)}
        n_spam = round(n * len(by_label[1]) / len(self))
        chosen = rng.sample(by_label[1], n_spam) + rng.sample(by_label[0], n - n_spam)
        rng.shuffle(chosen)
        return LabelledTexts(tuple(self.texts[i] for i in chosen), tuple(self.labels[i] for i in chosen))


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
