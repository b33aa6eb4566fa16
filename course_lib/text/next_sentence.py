"""BERT's next-sentence prediction data, Task #2 (Devlin et al. 2019, Sec. 3.1).

Segment B is the text that follows segment A with probability 0.5 (IsNext, label 0), a random stretch of the corpus
otherwise (NotNext, label 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IS_NEXT, NOT_NEXT = 0, 1  # BertForPreTraining's next-sentence classes


@dataclass
class SentencePair:
    """One NSP example: token ids of segments A and B, and the label (0 = IsNext, 1 = NotNext)."""

    a: list[int]
    b: list[int]
    label: int


def next_sentence_pairs(ids: torch.Tensor, n_pairs: int, segment_len: int,
                        generator: torch.Generator) -> list[SentencePair]:
    """``n_pairs`` NSP examples of two ``segment_len``-token segments cut from the 1-D corpus ``ids``.

    A starts at a random offset. With probability 0.5 B is the next ``segment_len`` tokens (IsNext); otherwise B
    starts at a random offset at least ``2 * segment_len`` away from A's end, so it never continues A (NotNext).
    """
    if len(ids) < 6 * segment_len:
        raise ValueError(f"the corpus ({len(ids)} tokens) must hold at least 6 * segment_len = {6 * segment_len}")
    pairs = []
    last_start = len(ids) - 2 * segment_len
    for _ in range(n_pairs):
        start = int(torch.randint(last_start + 1, (1,), generator=generator))
        a = ids[start:start + segment_len]
        if float(torch.rand((), generator=generator)) < 0.5:
            pairs.append(SentencePair(a.tolist(), ids[start + segment_len:start + 2 * segment_len].tolist(), IS_NEXT))
            continue
        while True:  # a random segment far from A's continuation
            other = int(torch.randint(len(ids) - segment_len + 1, (1,), generator=generator))
            if abs(other - (start + segment_len)) >= 2 * segment_len:
                break
        pairs.append(SentencePair(a.tolist(), ids[other:other + segment_len].tolist(), NOT_NEXT))
    return pairs
