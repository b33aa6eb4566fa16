"""GPT-1's head on frozen features: one linear layer on the last token's state, fitted once the features are cached.

    head = LinearHead(l2=1e-2).fit(train_features, train_labels)     # [n, dim] features, 0/1 labels
    predictions = head.predict(test_features)                        # [m] of 0/1

The body never runs during fitting, so trying several L2 strengths on the validation split costs nothing: that is
how the frozen real decoder and the bag-of-words baseline are tuned alike in notebook 01. The features are
standardised with the training set's mean and spread (a decoder's final states have a few very large coordinates),
then a class-balanced, L2-regularised logistic regression is fitted with L-BFGS (a convex problem: one answer, no
seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, l2: float,
                            max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight [dim], bias)`` minimising class-balanced cross-entropy + l2 / 2 * ||w||^2 on ``x [n, dim]``, L-BFGS.

    The positive class (spam, the rare one) is weighted by negatives / positives, so both classes count alike.
    Used by :class:`LinearHead` and by the bag-of-words baseline (``course_lib.training.baselines``).
    """
    weight = torch.zeros(x.size(1), requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    pos_weight = (y == 0).sum() / (y == 1).sum().clamp_min(1)  # balanced classes: spam is rare
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y, pos_weight=pos_weight)
        loss = loss + l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


class LinearHead:
    """P(spam | h) = sigmoid(standardise(h) . w + b), fitted with class-balanced, L2-regularised cross-entropy."""

    def __init__(self, l2: float = 1e-2, max_iter: int = 200):
        if l2 < 0 or max_iter < 1:
            raise ValueError(f"need l2 >= 0 and max_iter >= 1, got {l2} and {max_iter}")
        self.l2, self.max_iter = l2, max_iter
        self.mean = self.scale = self.weight = None
        self.bias = torch.zeros(())

    def fit(self, features: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> LinearHead:
        """``features [n, dim]``, ``labels [n]`` of 0/1 -> self (fitted)."""
        y = torch.as_tensor(labels, dtype=torch.float)
        if features.dim() != 2 or len(features) != len(y) or len(y) == 0:
            raise ValueError(f"need features [n, dim] and n labels, got {tuple(features.shape)} and {len(y)}")
        features = features.detach().float()
        self.mean, self.scale = features.mean(0), features.std(0).clamp_min(1e-6)
        x = (features - self.mean) / self.scale
        self.weight, self.bias = fit_logistic_regression(x, y, self.l2, self.max_iter)
        return self

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """The logit of class 1 per row: ``[n]``."""
        if self.weight is None:
            raise ValueError("call fit() before scores() or predict()")
        return (features.float() - self.mean) / self.scale @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted class (0 or 1) per row: ``[n]``."""
        return (self.scores(features) > 0).long()
