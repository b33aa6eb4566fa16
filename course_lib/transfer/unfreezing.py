"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018, Sec. 3.3).

First only the last layer group is unfrozen and trained for one epoch; then the next lower group is unfrozen
too, one more per epoch, until every group trains. The top layers hold the most task-specific features;
unfreezing from the top down keeps the general lower layers from being wrecked by the large, noisy gradients
of a freshly initialised head (catastrophic forgetting).
"""

from __future__ import annotations

from collections.abc import Sequence

from .freezing import unfreeze_top
from .layer_groups import LayerGroup


class GradualUnfreezer:
    """Epoch ``e`` trains the top ``min(start + e * per_epoch, len(groups))`` groups; the rest stay frozen.

    Call ``step(epoch)`` at the start of every epoch (nothing changes until the first call)::

        unfreezer = GradualUnfreezer(groups)
        for epoch in range(n_epochs):
            unfreezer.step(epoch)
            train_one_epoch(...)

    Keep every group in the optimizer from the start: frozen parameters get no gradient, so optimizers skip them.
    """

    def __init__(self, groups: Sequence[LayerGroup], start: int = 1, per_epoch: int = 1):
        if len(groups) == 0:
            raise ValueError("need at least one layer group, got none")
        if not 1 <= start <= len(groups):
            raise ValueError(f"start must be in [1, {len(groups)}] (the number of groups), got {start}")
        if per_epoch < 1:
            raise ValueError(f"per_epoch must be >= 1, got {per_epoch}")
        self.groups = list(groups)
        self.start = start
        self.per_epoch = per_epoch

    def num_trainable(self, epoch: int) -> int:
        """How many groups (counted from the top) train during ``epoch`` (0-based)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return min(self.start + epoch * self.per_epoch, len(self.groups))

    def trainable_names(self, epoch: int) -> list[str]:
        """Names of the groups that train during ``epoch``, bottom to top."""
        return [g.name for g in self.groups[len(self.groups) - self.num_trainable(epoch) :]]

    def step(self, epoch: int) -> list[str]:
        """Freeze / unfreeze the groups for ``epoch`` and return the names of those that now train."""
        unfreeze_top(self.groups, self.num_trainable(epoch))
        return self.trainable_names(epoch)

    def plan(self, n_epochs: int) -> list[list[str]]:
        """The trainable group names for epochs ``0 .. n_epochs-1`` (for a table or picture); changes nothing."""
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
        return [self.trainable_names(e) for e in range(n_epochs)]
