"""Checks for notebook 00's exercises: discriminative learning rates and the slanted triangular schedule.

Both follow ULMFiT (Howard & Ruder 2018, Sec. 3.2): eta^{l-1} = eta^l / 2.6 per layer group (eq. 2), and
cut = floor(T * cut_frac), p = t / cut before the cut and 1 - (t - cut) / (cut * (1 / cut_frac - 1)) after it,
lr = lr_max * (1 + p * (ratio - 1)) / ratio (eq. 3). The references are ``course_lib.transfer``'s. Every call draws
fresh arguments (number of groups, lr, decay; T, lr_max, cut_frac, ratio), so hard-coded values and replayed answers
fail; T * cut_frac is whole, so the paper's decay length and ``T - cut`` agree.
"""

from __future__ import annotations

import math
import random
import types
from collections.abc import Callable

import torch
from torch import nn

from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_dict, expect_number, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student, run_student
from course_lib.transfer import ULMFIT_DECAY, LayerGroup, discriminative_lrs, slanted_triangular_lr

_GROUPS_HINT = 'return [{"params": group.params, "lr": ...} for each group], bottom group first.'


def _random_groups(draw: random.Random, n_groups: int) -> list[LayerGroup]:
    """Embeddings, layers and a head of random small sizes, bottom to top."""
    dim = draw.randint(2, 6)
    modules = ([nn.Embedding(draw.randint(5, 12), dim)] + [nn.Linear(dim, dim) for _ in range(n_groups - 2)]
               + [nn.Linear(dim, 2)])
    names = ["embeddings"] + [f"layers.{i}" for i in range(n_groups - 2)] + ["head"]
    return [LayerGroup(name, list(module.parameters())) for name, module in zip(names, modules)]


def _lr_table(names: list[str], got: list[float], expected: list[float]) -> list[str]:
    return [f"{name:<11} got {g:.3e}   expected {e:.3e}" for name, g, e in zip(names, got, expected)]


@register("discriminative_lr_groups", title="Discriminative learning rates (ULMFiT)")
def discriminative_lr_groups(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(groups, lr, decay=2.6) -> list of {"params": [...], "lr": float}`` on three drawn cases."""
    draw = random.Random(seed)
    for _ in range(3):
        n_groups, lr = draw.randint(3, 7), 10 ** draw.uniform(-5, -2)
        decay = draw.choice([1.5, 2.0, 3.0, 3.5, 4.0]) + round(draw.uniform(0, 0.4), 2)  # never ULMFiT's 2.6
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw.randrange(2**31))
            groups = _random_groups(draw, n_groups)
        call = run_student(fn, groups, lr, decay)
        _grade_groups(call.answer, call.args[0], lr, decay)
    return "one group per layer group, the top one at lr, each one below at the rate above / decay (3 drawn cases)."


def _wrong_parameters(i: int, group: LayerGroup, params: list | tuple) -> None:
    """Say why group ``i`` does not hold the layer group's parameters: copies of them, or other ones."""
    mine = list(group.params)
    copies = len(params) == len(mine) and all(
        type(p) in (torch.Tensor, nn.Parameter) and p.shape == q.shape and torch.equal(p.detach(), q.detach())
        for p, q in zip(params, mine))
    if copies:
        raise CheckFailure(f"parameter group {i} holds copies of the parameters of layer group '{group.name}' "
                           "(`.detach()`, `.clone()` or `.data`), not the parameters themselves: the optimizer "
                           "would update the copies and the model would never change.",
                           hint="put the parameters themselves in the group: `group.params`, no .detach() or .clone().")
    raise CheckFailure(f"parameter group {i} does not hold exactly the parameters of layer group "
                       f"'{group.name}'.", hint="keep the groups' order: answer[i] belongs to groups[i].")


def _grade_groups(answer: object, groups: list[LayerGroup], lr: float, decay: float) -> None:
    """Structure, parameters (by identity) and rates of one answer, for groups handed over as ``groups``."""
    answer = expect_sequence(answer, "your answer", "dicts (optimizer parameter groups)", hint=_GROUPS_HINT)
    if len(answer) != len(groups):
        raise CheckFailure(f"expected one parameter group per layer group ({len(groups)}), got {len(answer)}.",
                           hint=_GROUPS_HINT)
    got = []
    for i, (group, param_group) in enumerate(zip(groups, answer)):
        param_group = expect_dict(param_group, f"your answer[{i}]", hint=_GROUPS_HINT)
        if "params" not in param_group or "lr" not in param_group:
            raise CheckFailure(f"parameter group {i} lacks the key {'params' if 'params' not in param_group else 'lr'}.",
                               hint='each dict needs "params" (the group\'s parameters) and "lr".')
        params = param_group["params"]
        if isinstance(params, types.GeneratorType):  # `module.parameters()`: torch.optim takes it too
            params = list(params)
        params = expect_sequence(params, f'your answer[{i}]["params"]', "parameters",
                                 hint="use the layer group's list itself: `group.params`.")
        if [id(p) for p in params] != [id(p) for p in group.params]:
            _wrong_parameters(i, group, params)
        got.append(expect_number(param_group["lr"], f'your answer[{i}]["lr"]'))
    expected = discriminative_lrs(len(groups), lr, decay)
    if all(math.isclose(g, e, rel_tol=1e-6) for g, e in zip(got, expected)):
        return
    n = len(groups)
    mistakes = [
        (discriminative_lrs(n, 1e-3, ULMFIT_DECAY), f"these are the rates for lr=1e-3 and decay=2.6: use the "
                                                    f"arguments (this call passed lr={lr:.3g}, decay={decay:g})."),
        (discriminative_lrs(n, lr, ULMFIT_DECAY), f"the rates divide by 2.6: use the `decay` argument (this call "
                                                  f"passed decay={decay:g})."),
        (discriminative_lrs(n, 1e-3, decay), f"the top rate is 1e-3: use the `lr` argument (this call passed "
                                             f"lr={lr:.3g})."),
        (list(reversed(expected)), "the order is reversed: the top group (the head, the last one) gets the full "
                                   "rate and each group below it the rate above / decay."),
        ([lr / decay ** (n - i) for i in range(n)], "off by one: the top group gets lr itself, not lr / decay."),
        ([lr * decay ** (n - 1 - i) for i in range(n)],
         "lower layers should change *less*: divide by decay going down, do not multiply."),
        ([lr] * n, "every group got the same rate: divide by decay once more for each step down."),
    ]
    hint = next((h for pattern, h in mistakes if all(math.isclose(g, p, rel_tol=1e-6) for g, p in zip(got, pattern))),
                "lr of group l-1 = lr of group l / decay, with the top group at lr.")
    raise CheckFailure(f"wrong learning rates (lr={lr:.3g}, decay={decay:g}, {n} groups).",
                       details=_lr_table([g.name for g in groups], got, expected), hint=hint)


@register("slanted_triangular_lr", title="Slanted triangular learning rate (ULMFiT)")
def slanted_triangular_lr_check(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(step, total_steps, lr_max, cut_frac=0.1, ratio=32) -> float`` at landmarks of two drawn schedules."""
    draw = random.Random(seed)
    for _ in range(2):
        cut_frac = draw.choice([0.05, 0.1, 0.2, 0.25, 0.5])
        total = round(draw.randint(4, 60) / cut_frac)
        lr_max, ratio = float(f"{10 ** draw.uniform(-4, 0):.3g}"), float(draw.randint(4, 64))
        cut = math.floor(total * cut_frac)
        steps = sorted({0, cut // 2, cut - 1, cut, cut + 1, (cut + total) // 2, total - 1, total,
                        draw.randrange(total)})
        rows, wrong, got_by_step = [], [], {}
        for step in steps:
            got = expect_number(call_student(fn, step, total, lr_max, cut_frac, ratio), f"your rate at step {step}")
            expected = slanted_triangular_lr(step, total, lr_max, cut_frac, ratio)
            got_by_step[step] = got
            rows.append(f"step {step:>4} of {total}: got {got:.6g}   expected {expected:.6g}")
            if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
                wrong.append((step, got, expected))
        if wrong:
            raise CheckFailure(f"wrong rate at step {wrong[0][0]} (T={total}, lr_max={lr_max:g}, cut_frac={cut_frac}, "
                               f"ratio={ratio:g}).", details=rows,
                               hint=_stlr_hint(wrong, got_by_step, total, lr_max, cut_frac, ratio))
    return "the rate climbs from lr_max/ratio to lr_max at cut = floor(T * cut_frac), then decays back by step T."


def _stlr_hint(wrong: list[tuple[int, float, float]], got: dict[int, float], total: int, lr_max: float,
               cut_frac: float, ratio: float) -> str:
    """Name the known mistake behind the wrong rates."""
    def matches(**changed: float) -> bool:
        options = {"total_steps": total, "lr_max": lr_max, "cut_frac": cut_frac, "ratio": ratio} | changed
        return all(math.isclose(value, slanted_triangular_lr(step, **options), rel_tol=1e-6, abs_tol=1e-12)
                   for step, value in got.items())

    step, value, _ = wrong[0]
    cut, low = math.floor(total * cut_frac), lr_max / ratio
    for name, fixed in (("ratio", {"ratio": 32.0}), ("cut_frac", {"cut_frac": 0.1}), ("lr_max", {"lr_max": 0.01})):
        if fixed[name] != {"ratio": ratio, "cut_frac": cut_frac, "lr_max": lr_max}[name] and matches(**fixed):
            return f"your rates use {name}={fixed[name]:g}: use the `{name}` argument (this call passed {name}=" \
                   f"{ {'ratio': ratio, 'cut_frac': cut_frac, 'lr_max': lr_max}[name]:g})."
    if step == 0 and math.isclose(value, 0.0, abs_tol=1e-12):
        return f"at step 0 the rate is lr_max / ratio = {low:g}, not 0: lr = lr_max * (1 + p(ratio - 1)) / ratio."
    if step == cut:
        return f"the peak lr_max is reached at step cut = floor(T * cut_frac) = {cut}."
    if all(math.isclose(g, lr_max, rel_tol=1e-6) for s, g, _ in wrong if s > cut):
        return "after the peak the rate must come down: p = 1 - (t - cut) / (T - cut) for t >= cut."
    if step >= total - 1:
        return f"the decay ends at lr_max / ratio = {low:g} at step T: p = 1 - (t - cut) / (T - cut)."
    return "p rises linearly from 0 to 1 until cut, then falls linearly back to 0 at T."
