"""L2-SP: regularise towards the pretrained weights, not towards zero (Li, Grandvalet & Davoine 2018, Sec. 3).

    Omega(w) = alpha / 2 * ||w_body - w0_body||^2  +  beta / 2 * ||w_head||^2

w0 is the pretrained "starting point" (SP). The pretrained body is pulled back to w0, the new head (which has
no pretrained value) gets ordinary L2. Plain weight decay would pull the body towards 0, i.e. away from what
pretraining learned, so the body must get no weight decay from the optimizer: ``check_optimizer`` enforces it.
Usage: ``loss = task_loss + l2sp.penalty()``. Its gradient is alpha * (w - w0) on the body, beta * w on the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layer_groups import LayerGroup, make_groups
from .snapshot import WeightSnapshot


def _as_group_list(groups: LayerGroup | Sequence[LayerGroup] | nn.Module | None, name: str) -> list[LayerGroup]:
    """Accept one group, a list of groups, or a module (one group called ``name``); ``None`` -> []."""
    if groups is None:
        return []
    if isinstance(groups, LayerGroup):
        return [groups]
    if isinstance(groups, nn.Module):
        return make_groups([groups], names=[name])
    groups = list(groups)
    if not all(isinstance(g, LayerGroup) for g in groups):
        raise ValueError(f"{name} must be a LayerGroup, a list of LayerGroups or an nn.Module")
    return groups


class L2SP:
    """Snapshots the body's weights (w0) at construction and returns the L2-SP penalty on each call.

    ``body``: the pretrained layer groups (e.g. ``groups[:-1]``); ``head``: the new groups (e.g. ``groups[-1]``),
    or ``None``. Build it after ``model.to(device)`` and before training.
    """

    def __init__(
        self,
        body: LayerGroup | Sequence[LayerGroup] | nn.Module,
        head: LayerGroup | Sequence[LayerGroup] | nn.Module | None,
        alpha: float,
        beta: float,
    ):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.body = _as_group_list(body, "body")
        self.head = _as_group_list(head, "head")
        if not self.body:
            raise ValueError("body needs at least one layer group, got none")
        body_ids = {id(p) for g in self.body for p in g.params}
        shared = [g.name for g in self.head if any(id(p) in body_ids for p in g.params)]
        if shared:
            raise ValueError(f"head groups {shared} share parameters with the body; a weight is either body or head")
        self.alpha = alpha
        self.beta = beta
        self.start = WeightSnapshot(self.body)  # w0: the pretrained starting point

    def penalty(self) -> torch.Tensor:
        """alpha/2 * sum over body of ||w - w0||^2 + beta/2 * sum over head of ||w||^2 (a scalar tensor)."""
        body = torch.stack([self.start.squared_distance(i) for i in range(len(self.body))]).sum()
        penalty = self.alpha / 2 * body
        head_params = [p for g in self.head for p in g.params]
        if head_params:
            penalty = penalty + self.beta / 2 * torch.stack([(w**2).sum() for w in head_params]).sum()
        return penalty

    __call__ = penalty

    def distances(self, relative: bool = False) -> dict[str, float]:
        """Body group name -> ||w - w0|| (relative: / ||w0||): how far fine-tuning moved each pretrained group."""
        return self.start.distances(relative=relative)

    def check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """ValueError if any optimizer parameter group applies weight decay to a body parameter."""
        body_ids = {id(p) for g in self.body for p in g.params}
        offending = []
        for i, group in enumerate(optimizer.param_groups):
            decays = group.get("weight_decay", 0.0) > 0
            if decays and any(id(p) in body_ids for p in group["params"]):
                offending.append(f"{group.get('name', i)!r} (weight_decay={group['weight_decay']})")
        if offending:
            raise ValueError(
                f"L2-SP needs no weight decay on the pretrained body, but parameter groups {', '.join(offending)} "
                "decay body weights towards 0; pass weight_decay=0.0 for them"
            )
