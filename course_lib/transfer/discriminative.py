"""Discriminative fine-tuning: a learning rate per layer group (ULMFiT, Howard & Ruder 2018, Sec. 3.2).

Each group l gets its own rate in the SGD update (eq. 2): theta^l_t = theta^l_{t-1} - eta^l * grad_{theta^l} J.
Lower layers hold more general features and should change less, so ULMFiT picks the top rate eta^L and sets
eta^{l-1} = eta^l / 2.6. In PyTorch this is one optimizer *parameter group* per layer group.
"""

from __future__ import annotations

from collections.abc import Sequence

from .layer_groups import LayerGroup

ULMFIT_DECAY = 2.6  # Howard & Ruder 2018, Sec. 3.2: eta^{l-1} = eta^l / 2.6


def discriminative_lrs(n_groups: int, lr: float, decay: float = ULMFIT_DECAY) -> list[float]:
    """Learning rates bottom to top: the top group gets ``lr``, each group below gets the one above ``/ decay``."""
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if decay < 1:
        raise ValueError(
            f"decay must be >= 1 (it divides: lr of group l-1 = lr of group l / decay), got {decay}; "
            f"for a per-layer multiplier m < 1 pass decay=1/m"
        )
    return [lr / decay ** (n_groups - 1 - i) for i in range(n_groups)]


def discriminative_param_groups(
    groups: Sequence[LayerGroup], lr: float, decay: float = ULMFIT_DECAY, weight_decay: float | None = None
) -> list[dict]:
    """One ``torch.optim`` parameter group per layer group with ULMFiT's learning rates.

    Use as ``torch.optim.AdamW(discriminative_param_groups(groups, lr=1e-4))``. Each dict also carries the
    group's ``name`` (optimizers keep extra keys). ``weight_decay=None`` leaves the optimizer's default.
    """
    if len(groups) == 0:
        raise ValueError("need at least one layer group, got none")
    if weight_decay is not None and weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    param_groups = []
    for group, group_lr in zip(groups, discriminative_lrs(len(groups), lr, decay)):
        param_group = {"params": list(group.params), "lr": group_lr, "name": group.name}
        if weight_decay is not None:
            param_group["weight_decay"] = weight_decay
        param_groups.append(param_group)
    return param_groups
