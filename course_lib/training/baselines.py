"""Simple baselines that every transfer-learning number should be read against.

- ``BagOfWordsClassifier``: logistic regression on TF-IDF-weighted word unigrams and bigrams, the classic strong
  baseline for short-text classification (spam filters were built this way long before transformers).
- ``majority_baseline``: always predict the most frequent class ("always ham" is 88% accurate and has spam F1 0).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from course_lib.training.linear_head import fit_logistic_regression

_WORD = re.compile(r"[a-z0-9£$€']+|[!?]")


def words(text: str) -> list[str]:
    """Lower-cased word unigrams and adjacent bigrams (``"free entry"``), plus ``!`` and ``?`` as words."""
    tokens = _WORD.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class BagOfWordsClassifier:
    """TF-IDF bag of unigrams + bigrams, then L2-regularised, class-balanced logistic regression (L-BFGS)."""

    def __init__(self, min_count: int = 1, l2: float = 1e-3, max_iter: int = 200):
        if min_count < 1 or l2 < 0:
            raise ValueError(f"need min_count >= 1 and l2 >= 0, got {min_count} and {l2}")
        self.min_count, self.l2, self.max_iter = min_count, l2, max_iter
        self.vocab: dict[str, int] = {}
        self.idf = torch.empty(0)
        self.weight = torch.empty(0)
        self.bias = torch.zeros(())

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """``[texts, vocab]`` TF-IDF rows, each scaled to unit length."""
        rows = torch.zeros(len(texts), len(self.vocab))
        for i, text in enumerate(texts):
            for word, count in Counter(words(text)).items():
                if word in self.vocab:
                    rows[i, self.vocab[word]] = count
        rows = rows * self.idf
        return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "BagOfWordsClassifier":
        if len(texts) != len(labels) or not texts:
            raise ValueError(f"need as many labels as texts (got {len(texts)} and {len(labels)}), at least one")
        document_frequency = Counter(w for text in texts for w in set(words(text)))
        kept = sorted(w for w, n in document_frequency.items() if n >= self.min_count)
        self.vocab = {w: i for i, w in enumerate(kept)}
        self.idf = torch.tensor([math.log((1 + len(texts)) / (1 + document_frequency[w])) + 1 for w in kept])
        x, y = self.features(texts), torch.tensor(labels, dtype=torch.float)
        self.weight, self.bias = fit_logistic_regression(x, y, self.l2, self.max_iter)
        return self

    def predict(self, texts: Sequence[str]) -> torch.Tensor:
        """Predicted class (0 or 1) per text."""
        if not self.vocab:
            raise ValueError("call fit() before predict()")
        return (self.features(texts) @ self.weight + self.bias > 0).long()


def majority_baseline(train_labels: Sequence[int], n: int) -> torch.Tensor:
    """``n`` predictions of the most frequent training label."""
    if not train_labels:
        raise ValueError("no training labels")
    return torch.full((n,), Counter(train_labels).most_common(1)[0][0], dtype=torch.long)
