"""A frozen copy of the starting weights, and how far each layer group has moved from it.

Fine-tuning can overwrite what pretraining learned ("catastrophic forgetting", Howard & Ruder 2018, Sec. 3.3;
Li, Grandvalet & Davoine 2018). The distance ||w - w0|| per layer group makes that visible: which groups moved,
how much, with and without L2-SP or with a too-high learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .layer_groups import LayerGroup


class WeightSnapshot:
    """Copies of the groups' weights at construction time (w0), kept on the parameters' device.

    Take the snapshot after moving the model to its device (``model.to(device)``), before training.
    """

    def __init__(self, groups: Sequence[LayerGroup]):
        if len(groups) == 0:
            raise ValueError("need at least one layer group, got none")
        self.groups = list(groups)
        self.reference = [[p.detach().clone() for p in g.params] for g in self.groups]

    def squared_distance(self, index: int) -> torch.Tensor:
        """||w - w0||^2 summed over group ``index``; differentiable with respect to w."""
        pairs = zip(self.groups[index].params, self.reference[index])
        return torch.stack([((w - w0) ** 2).sum() for w, w0 in pairs]).sum()

    def distances(self, relative: bool = False) -> dict[str, float]:
        """Group name -> ||w - w0|| (or ||w - w0|| / ||w0|| with ``relative=True``; NaN where w0 is all zeros)."""
        result = {}
        with torch.no_grad():
            for i, group in enumerate(self.groups):
                moved = math.sqrt(self.squared_distance(i).item())
                if relative:
                    size = math.sqrt(sum((w0.double() ** 2).sum().item() for w0 in self.reference[i]))
                    moved = moved / size if size > 0 else math.nan
                result[group.name] = moved
        return result
