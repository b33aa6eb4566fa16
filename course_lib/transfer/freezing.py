"""Freezing and unfreezing layer groups, and a per-group count of what trains.

Feature extraction trains only a new head on a frozen body; "fine-tuning the top layers" freezes the lower
groups (Yosinski et al. 2014; Howard & Ruder 2018, Sec. 3.3). A frozen parameter has ``requires_grad=False``,
so backward leaves its ``.grad`` as ``None`` and ``torch.optim`` optimizers skip it (no update, no weight decay).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .layer_groups import GroupLike, LayerGroup, parameters_of


def freeze(*objs: GroupLike) -> None:
    """Stop gradients to every parameter of the given groups / modules; drops any stale ``.grad``."""
    for p in parameters_of(objs):
        p.requires_grad_(False)
        p.grad = None  # a gradient left from before freezing would still be applied by optimizer.step()


def unfreeze(*objs: GroupLike) -> None:
    """Let gradients flow to every parameter of the given groups / modules again."""
    for p in parameters_of(objs):
        p.requires_grad_(True)


def unfreeze_top(groups: Sequence[LayerGroup], n: int) -> None:
    """Freeze every group, then unfreeze the top ``n`` (``n=1``: only the head trains; ``n=len(groups)``: all)."""
    if not 0 <= n <= len(groups):
        raise ValueError(f"n must be in [0, {len(groups)}] (the number of groups), got {n}")
    freeze(*groups)
    unfreeze(*groups[len(groups) - n :])


@contextmanager
def frozen(*objs: GroupLike) -> Iterator[None]:
    """Freeze the given groups inside a ``with`` block and restore every ``requires_grad`` flag afterwards."""
    params = parameters_of(objs)
    before = [p.requires_grad for p in params]
    freeze(*params)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


@dataclass(frozen=True)
class GroupSummary:
    """How many of one group's weights train right now."""

    name: str
    trainable: int
    total: int

    @property
    def state(self) -> str:
        """``"trainable"``, ``"frozen"`` or ``"partly"``."""
        if self.trainable == self.total:
            return "trainable"
        return "frozen" if self.trainable == 0 else "partly"


def trainable_summary(groups: Sequence[LayerGroup]) -> list[GroupSummary]:
    """One row per group, bottom to top: name, trainable weights, total weights (for a table or a bar chart)."""
    return [GroupSummary(g.name, g.num_trainable, g.num_params) for g in groups]


def summary_table(groups: Sequence[LayerGroup]) -> str:
    """The trainable summary as a fixed-width text table, top group first (as the network is usually drawn)."""
    rows = trainable_summary(groups)
    width = max(len("group"), *(len(r.name) for r in rows))
    lines = [f"{'group':<{width}}  {'state':<9}  {'trainable':>10}  {'total':>10}"]
    for r in reversed(rows):
        lines.append(f"{r.name:<{width}}  {r.state:<9}  {r.trainable:>10,}  {r.total:>10,}")
    trainable, total = sum(r.trainable for r in rows), sum(r.total for r in rows)
    percent = f"{100 * trainable / max(total, 1):.1f}%"
    lines.append(f"{'all':<{width}}  {percent:<9}  {trainable:>10,}  {total:>10,}")
    return "\n".join(lines)
