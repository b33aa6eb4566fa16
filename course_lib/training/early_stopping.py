"""Train until the validation loss stops improving, and choose the learning rate the same way.

A baseline is only as good as its tuning: a model trained from scratch needs many more passes over its labels
than a pretrained one, at a rate of its own. ``fit_until_plateau`` trains one epoch at a time, scores the
validation split after each, keeps the weights of the epoch with the lowest validation loss and stops after
``patience`` epochs without a new lowest loss. ``choose_rate`` runs it once per candidate rate and keeps the rate
whose best epoch had the lowest validation loss. Nothing here looks at a test split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from .loop import Batch, History, classifier_report, fit


@dataclass(frozen=True)
class Plateau:
    """Where a run stopped: its rate, the best epoch (1-based) and its validation loss, the whole curve."""

    lr: float
    best_epoch: int
    valid_loss: float
    curve: list[float]  # validation loss after each epoch that ran


def _joined(parts: list[History]) -> History:
    """One ``History`` from consecutive one-epoch runs, epochs numbered from 1 and steps counted throughout."""
    joined = History()
    for epoch, part in enumerate(parts, start=1):
        joined.loss += part.loss
        joined.lr += part.lr
        joined.epochs += [{**e, "epoch": epoch} for e in part.epochs]
        joined.epoch_ends.append(len(joined.loss))
        joined.seconds += part.seconds
    return joined


def fit_until_plateau(model: torch.nn.Module, batches: Iterable[Batch], valid_batches: Iterable[Batch], *, lr: float,
                      max_epochs: int = 30, patience: int = 3,
                      make_optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
                      description: str = "training") -> tuple[History, Plateau]:
    """Train ``model`` epoch by epoch until ``patience`` epochs bring no lower validation loss; keep the best epoch.

    On return ``model`` holds the weights of the epoch with the lowest validation loss. The ``History`` covers every
    epoch that ran (its ``epochs`` hold the validation report of each).
    """
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"need max_epochs >= 1 and patience >= 1, got {max_epochs} and {patience}")
    optimizer = make_optimizer(model.parameters(), lr=lr)
    parts, curve, best_state = [], [], None
    for _ in range(max_epochs):
        parts.append(fit(model, batches, optimizer=optimizer, epochs=1, progress=False, description=description,
                         evaluate=lambda m: classifier_report(m, valid_batches)))
        curve.append(parts[-1].epochs[-1]["loss"])
        best = min(range(len(curve)), key=curve.__getitem__)
        if best == len(curve) - 1:
            best_state = copy.deepcopy(model.state_dict())
        elif len(curve) - 1 - best >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return _joined(parts), Plateau(lr=lr, best_epoch=best + 1, valid_loss=curve[best], curve=curve)


def choose_rate(make_model: Callable[[], torch.nn.Module], batches: Iterable[Batch], valid_batches: Iterable[Batch],
                *, lrs: Sequence[float], max_epochs: int = 30, patience: int = 3,
                make_optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
                description: str = "training") -> tuple[torch.nn.Module, History, Plateau, dict[float, Plateau]]:
    """``fit_until_plateau`` a fresh ``make_model()`` at each rate; keep the run with the lowest validation loss.

    Returns that run's model (at its best epoch), its history and plateau, and every rate's plateau for a plot.
    """
    if not lrs:
        raise ValueError("need at least one learning rate")
    runs = {}
    for lr in lrs:
        model = make_model()
        history, plateau = fit_until_plateau(model, batches, valid_batches, lr=lr, max_epochs=max_epochs,
                                             patience=patience, make_optimizer=make_optimizer,
                                             description=description)
        runs[lr] = (model, history, plateau)
    best = min(runs, key=lambda lr: runs[lr][2].valid_loss)
    model, history, plateau = runs[best]
    return model, history, plateau, {lr: run[2] for lr, run in runs.items()}
