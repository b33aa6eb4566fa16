"""Checks for notebook 00's exercises: discriminative learning rates and the slanted triangular schedule.

Both follow ULMFiT (Howard & Ruder 2018, Sec. 3.2): eta^{l-1} = eta^l / 2.6 per layer group (eq. 2), and
cut = floor(T * cut_frac), p = t / cut before the cut and 1 - (t - cut) / (cut * (1 / cut_frac - 1)) after it,
lr = lr_max * (1 + p * (ratio - 1)) / ratio (eq. 3). The references are ``course_lib.transfer``'s, checked on values
of T where T * cut_frac is whole, so the paper's decay length and ``T - cut`` agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from course_lib.grading.registry import register
from course_lib.grading.runner import CheckFailure, call_student
from course_lib.transfer import LayerGroup, discriminative_lrs, slanted_triangular_lr


def _tiny_groups() -> list[LayerGroup]:
    """Embeddings, three layers and a head, bottom to top, as small modules."""
    torch.manual_seed(0)
    modules = [nn.Embedding(10, 4)] + [nn.Linear(4, 4) for _ in range(3)] + [nn.Linear(4, 2)]
    names = ["embeddings", "layers.0", "layers.1", "layers.2", "head"]
    return [LayerGroup(name, list(m.parameters())) for name, m in zip(names, modules)]


def _lr_table(names: list[str], got: list[float], expected: list[float]) -> list[str]:
    return [f"{name:<11} got {g:.3e}   expected {e:.3e}" for name, g, e in zip(names, got, expected)]


@register("discriminative_lr_groups", title="Discriminative learning rates (ULMFiT)")
def discriminative_lr_groups(fn: Callable) -> str:
    """Grade ``fn(groups, lr, decay=2.6) -> list of {"params": [...], "lr": float}``, one per group, bottom to top."""
    groups, lr, decay = _tiny_groups(), 1e-3, 2.6
    answer = call_student(fn, groups, lr, decay)
    if not isinstance(answer, (list, tuple)) or not all(isinstance(g, dict) for g in answer):
        raise CheckFailure(f"expected a list of dicts (optimizer parameter groups), got {type(answer).__name__}.",
                           hint='return [{"params": group.params, "lr": ...} for each group].')
    if len(answer) != len(groups):
        raise CheckFailure(f"expected one parameter group per layer group ({len(groups)}), got {len(answer)}.")
    for i, (group, param_group) in enumerate(zip(groups, answer)):
        if "params" not in param_group or "lr" not in param_group:
            raise CheckFailure(f"parameter group {i} lacks the key {'params' if 'params' not in param_group else 'lr'}.",
                               hint='each dict needs "params" (the group\'s parameters) and "lr".')
        got_ids = {id(p) for p in param_group["params"]}
        if got_ids != {id(p) for p in group.params}:
            raise CheckFailure(f"parameter group {i} does not hold exactly the parameters of layer group "
                               f"'{group.name}'.", hint="keep the groups' order: answer[i] belongs to groups[i].")
    got = [float(g["lr"]) for g in answer]
    expected = discriminative_lrs(len(groups), lr, decay)
    names = [g.name for g in groups]
    if all(math.isclose(g, e, rel_tol=1e-6) for g, e in zip(got, expected)):
        return f"one group per layer, learning rates {expected[0]:.2e} (embeddings) ... {expected[-1]:.0e} (head)."
    mistakes = [
        (list(reversed(expected)), "the order is reversed: the top group (the head, the last one) gets the full "
                                   "rate and each group below it the rate above / decay."),
        ([lr / decay ** (len(groups) - i) for i in range(len(groups))],
         "off by one: the top group gets lr itself, not lr / decay."),
        ([lr * decay ** (len(groups) - 1 - i) for i in range(len(groups))],
         "lower layers should change *less*: divide by decay going down, do not multiply."),
        ([lr] * len(groups), "every group got the same rate: divide by decay once more for each step down."),
    ]
    hint = next((h for pattern, h in mistakes if all(math.isclose(g, p, rel_tol=1e-6) for g, p in zip(got, pattern))),
                "lr of group l-1 = lr of group l / decay, with the top group at lr.")
    raise CheckFailure("wrong learning rates.", details=_lr_table(names, got, expected), hint=hint)


@register("slanted_triangular_lr", title="Slanted triangular learning rate (ULMFiT)")
def slanted_triangular_lr_check(fn: Callable) -> str:
    """Grade ``fn(step, total_steps, lr_max, cut_frac=0.1, ratio=32) -> float`` at the schedule's landmarks."""
    cases = [(1000, 0.01, 0.1, 32.0), (200, 1.0, 0.25, 10.0)]
    for total, lr_max, cut_frac, ratio in cases:
        cut = math.floor(total * cut_frac)
        steps = sorted({0, cut // 2, cut - 1, cut, cut + 1, (cut + total) // 2, total - 1, total})
        rows, wrong = [], []
        for step in steps:
            got = call_student(fn, step, total, lr_max, cut_frac, ratio)
            if not isinstance(got, (int, float)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
                raise CheckFailure(f"expected a number for step {step}, got {type(got).__name__}.",
                                   hint="return the learning rate as a Python float.")
            got = float(got)
            expected = slanted_triangular_lr(step, total, lr_max, cut_frac, ratio)
            rows.append(f"step {step:>4} of {total}: got {got:.6g}   expected {expected:.6g}")
            if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
                wrong.append((step, got, expected))
        if wrong:
            step, got, expected = wrong[0]
            low = lr_max / ratio
            if step == 0 and math.isclose(got, 0.0, abs_tol=1e-12):
                hint = f"at step 0 the rate is lr_max / ratio = {low:g}, not 0: lr = lr_max * (1 + p(ratio - 1)) / ratio."
            elif step == cut:
                hint = f"the peak lr_max is reached at step cut = floor(T * cut_frac) = {cut}."
            elif all(math.isclose(g, lr_max, rel_tol=1e-6) for s, g, _ in wrong if s > cut):
                hint = "after the peak the rate must come down: p = 1 - (t - cut) / (T - cut) for t >= cut."
            elif step >= total - 1:
                hint = f"the decay ends at lr_max / ratio = {low:g} at step T: p = 1 - (t - cut) / (T - cut)."
            else:
                hint = "p rises linearly from 0 to 1 until cut, then falls linearly back to 0 at T."
            raise CheckFailure(f"wrong rate at step {step} (T={total}, lr_max={lr_max}, cut_frac={cut_frac}, "
                               f"ratio={ratio}).", details=rows, hint=hint)
    return "the rate climbs from lr_max/ratio to lr_max at cut = floor(T * cut_frac), then decays back by step T."
