"""The unlabelled pretraining corpus: 38 Shakespeare plays as plain text (public domain; see data/README.md).

The split is by play: four whole plays (Hamlet, The Tempest, Twelfth Night, Julius Caesar) are held out for
validation, so held-out perplexity measures generalisation to text the model never saw, not to neighbouring lines.
"""

from __future__ import annotations

from functools import lru_cache

from course_lib.paths import data_path

SPLITS = ("train", "valid")


@lru_cache(maxsize=None)
def load_shakespeare(split: str = "train") -> str:
    """The corpus text of one split, ``"train"`` (34 plays, 4.5 MB) or ``"valid"`` (4 plays, 0.5 MB)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return data_path(f"shakespeare/{split}.txt").read_text(encoding="utf-8")
