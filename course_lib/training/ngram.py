"""Count-based baselines for the course's language models: unigram and bigram LMs with add-k smoothing.

    P_uni(w)      = (c(w) + k) / (N + k V)
    P_bi(w | u)   = (c(u, w) + k) / (c(u) + k V)          (Jurafsky & Martin, "Speech and Language Processing",
                                                           3rd ed., Ch. 3, Eq. 3.25: add-k smoothing)

A neural LM is worth its compute only if its held-out cross-entropy beats these on the same tokens.
Bigrams are stored sparsely (sorted pair keys), so an 8,192-token vocabulary costs no 8,192 x 8,192 table.
"""

from __future__ import annotations

import math

import torch


def _check_ids(ids: torch.Tensor, vocab_size: int, least: int) -> None:
    if ids.dim() != 1 or len(ids) < least:
        raise ValueError(f"ids must be a 1-D tensor of at least {least} token ids, got shape {tuple(ids.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")


class UnigramLM:
    """P(w) = (c(w) + k) / (N + kV): every token predicted from no context at all."""

    def __init__(self, vocab_size: int, k: float = 1.0):
        if vocab_size < 1 or k <= 0:
            raise ValueError(f"need vocab_size >= 1 and k > 0, got vocab_size={vocab_size}, k={k}")
        self.vocab_size, self.k = vocab_size, k
        self.counts = torch.zeros(vocab_size, dtype=torch.float64)

    def fit(self, ids: torch.Tensor) -> UnigramLM:
        """Count the tokens of a 1-D id tensor."""
        _check_ids(ids, self.vocab_size, 1)
        self.counts = torch.bincount(ids, minlength=self.vocab_size).double()
        return self

    def log_probs(self) -> torch.Tensor:
        """log P(w) for every vocabulary entry: ``[vocab]``."""
        total = self.counts.sum() + self.k * self.vocab_size
        return torch.log((self.counts + self.k) / total)

    def cross_entropy(self, ids: torch.Tensor) -> float:
        """Mean negative log-likelihood in nats per token of a 1-D id tensor."""
        _check_ids(ids, self.vocab_size, 1)
        return float(-self.log_probs()[ids].mean())


class BigramLM:
    """P(w | u) = (c(u, w) + k) / (c(u) + kV): the next token predicted from the previous one."""

    def __init__(self, vocab_size: int, k: float = 1.0):
        if vocab_size < 1 or k <= 0:
            raise ValueError(f"need vocab_size >= 1 and k > 0, got vocab_size={vocab_size}, k={k}")
        self.vocab_size, self.k = vocab_size, k
        self.pair_keys = torch.zeros(0, dtype=torch.long)  # sorted u * V + w of every seen pair
        self.pair_counts = torch.zeros(0, dtype=torch.float64)
        self.context_counts = torch.zeros(vocab_size, dtype=torch.float64)  # c(u) as a left context

    def fit(self, ids: torch.Tensor) -> BigramLM:
        """Count the adjacent pairs of a 1-D id tensor."""
        _check_ids(ids, self.vocab_size, 2)
        keys = ids[:-1] * self.vocab_size + ids[1:]  # [pairs]
        self.pair_keys, counts = torch.unique(keys, sorted=True, return_counts=True)
        self.pair_counts = counts.double()
        self.context_counts = torch.bincount(ids[:-1], minlength=self.vocab_size).double()
        return self

    def pair_count(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """c(u, w) for aligned tensors of previous and current tokens (0 for unseen pairs)."""
        keys = previous * self.vocab_size + current
        if len(self.pair_keys) == 0:
            return torch.zeros(keys.shape, dtype=torch.float64)
        where = torch.searchsorted(self.pair_keys, keys).clamp(max=len(self.pair_keys) - 1)
        found = self.pair_keys[where] == keys
        return torch.where(found, self.pair_counts[where], torch.zeros((), dtype=torch.float64))

    def cross_entropy(self, ids: torch.Tensor) -> float:
        """Mean negative log-likelihood in nats per predicted token (tokens 2..N) of a 1-D id tensor."""
        _check_ids(ids, self.vocab_size, 2)
        previous, current = ids[:-1], ids[1:]
        probs = (self.pair_count(previous, current) + self.k) / (
            self.context_counts[previous] + self.k * self.vocab_size)
        return float(-torch.log(probs).mean())


def best_add_k(model_class: type, train_ids: torch.Tensor, heldout_ids: torch.Tensor, vocab_size: int,
               ks: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)) -> tuple[float, float]:
    """``(k, held-out nats per token)`` of the best k: the baseline gets every advantage, even tuning on held-out."""
    scores = [(model_class(vocab_size, k).fit(train_ids).cross_entropy(heldout_ids), k) for k in ks]
    loss, k = min(scores)
    return k, loss


def perplexity(nats_per_token: float) -> float:
    """exp(cross-entropy): the effective number of equally likely choices per token."""
    return math.exp(nats_per_token)
