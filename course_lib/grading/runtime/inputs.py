"""What the student is handed and what comes back: fresh seeds, copies, changed inputs, answers of the wrong kind.

- :func:`resolve_seed`: ``None`` draws a fresh seed (so a table of answers cannot replay), an int reproduces a draw.
- :func:`find_change`: the first difference between what the check made and the copy the student was handed.
- :func:`expect_number`, :func:`expect_exact_tensor`, :func:`expect_sequence`, :func:`expect_dict`: refuse an answer
  of the wrong kind (a string, a list for a tensor, a subclass of float or Tensor whose methods the student wrote)
  *before* the check calls any method on it.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from typing import Any

import numpy as np
import torch

from course_lib.grading.runtime.errors import CheckFailure

NUMBER_TYPES = (int, float, np.floating, np.integer)  # exact types (and numpy's scalar types) accepted as numbers


def resolve_seed(seed: int | None) -> int:
    """``seed`` itself, or a fresh random seed (drawn from the OS, not from torch's generator) when it is None."""
    if seed is None:
        return secrets.randbelow(2**31)
    if type(seed) is not int or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return seed


def kind(value: Any) -> str:
    """A short, safe name for a value's type (``str``, ``torch.Tensor``, ``MyFloat (a subclass of float)``)."""
    cls = type(value)
    name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    name = {"torch.Tensor": "torch.Tensor", "torch.nn.parameter.Parameter": "torch.nn.Parameter"}.get(name, name)
    for base, base_name in ((torch.Tensor, "torch.Tensor"), (float, "float"), (int, "int"), (list, "list"),
                            (tuple, "tuple"), (dict, "dict"), (str, "str")):
        if issubclass(cls, base) and cls not in (base, torch.nn.Parameter, bool):
            return f"{name} (a subclass of {base_name})"
    return name


def _is_number(value: Any) -> bool:
    if type(value) is bool:
        return False
    return type(value) in (int, float) or (type(value).__module__ == "numpy" and isinstance(value, NUMBER_TYPES))


def expect_number(value: Any, name: str, *, finite: bool = True) -> float:
    """``value`` as a float if it is a plain number (int, float, numpy scalar, a one-element exact tensor)."""
    if value is None:
        raise CheckFailure(f"`{name}` is None.", hint="did you forget the `return` statement?")
    if type(value) in (torch.Tensor, torch.nn.Parameter) and value.numel() == 1 and not value.is_complex():
        number = float(value.detach().reshape(()))
    elif _is_number(value):
        number = float(value)
    else:
        hint = ("a number, not text: compute it, do not format it (no f-string or str())." if isinstance(value, str)
                else "return a plain Python float (e.g. `float(x)`), not a subclass or a container.")
        shown = f": {_short(value)}" if type(value) in (str, int, float, bool) else ""
        raise CheckFailure(f"`{name}` should be a number, got {kind(value)}{shown}.", hint=hint)
    if finite and not math.isfinite(number):
        raise CheckFailure(f"`{name}` is {number}.", hint="NaN or inf comes from 0/0, inf - inf or a division by 0.")
    return number


def expect_exact_tensor(value: Any, name: str, hint: str | None = None) -> torch.Tensor:
    """``value`` if it is a ``torch.Tensor`` itself (or an ``nn.Parameter``), not a subclass or another container."""
    if type(value) in (torch.Tensor, torch.nn.Parameter):
        return value
    if value is None:
        raise CheckFailure(f"`{name}` is None.", hint="did you forget the `return` statement?")
    if isinstance(value, torch.Tensor):
        raise CheckFailure(f"`{name}` is a {kind(value)}: the check only accepts plain torch.Tensor answers.",
                           hint="return a plain tensor (e.g. `torch.as_tensor(x)` of a plain tensor), not a subclass.")
    raise CheckFailure(f"`{name}` should be a torch.Tensor, got {kind(value)}.",
                       hint=hint or "return a tensor (no `.tolist()`, `.item()` or `.numpy()`).")


def expect_sequence(value: Any, name: str, what: str, hint: str | None = None) -> list | tuple:
    """``value`` if it is a plain list or tuple."""
    if type(value) in (list, tuple):
        return value
    if value is None:
        raise CheckFailure(f"`{name}` is None.", hint="did you forget the `return` statement?")
    raise CheckFailure(f"`{name}` should be a list of {what}, got {kind(value)}.", hint=hint)


def expect_dict(value: Any, name: str, hint: str | None = None) -> dict:
    """``value`` if it is a plain dict whose keys are plain strings."""
    if type(value) is not dict:
        raise CheckFailure(f"`{name}` should be a dict, got {kind(value)}.", hint=hint)
    odd = [key for key in value if type(key) is not str]  # iterating a plain dict calls no student method
    if odd:
        raise CheckFailure(f"`{name}` has a key of type {kind(odd[0])}; keys must be plain strings.", hint=hint)
    return value


def _short(value: Any) -> str:
    """A short, safe description for messages: the repr of plain values only (a student's __repr__ is not called)."""
    if type(value) in (str, int, float, bool, type(None)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"<{kind(value)}>"


def find_change(before: Any, after: Any, path: str) -> str | None:
    """The first difference between ``before`` (kept by the check) and ``after`` (the copy handed over), or None."""
    if type(before) is not type(after):
        return f"`{path}` was a {kind(before)}, after your call it is a {kind(after)}."
    if isinstance(before, torch.Generator):
        return None  # drawing from a generator is what it is for
    if isinstance(before, torch.Tensor):
        return _tensor_change(before, after, path)
    if isinstance(before, (list, tuple)):
        if len(before) != len(after):
            return f"`{path}` had {len(before)} items, after your call it has {len(after)}."
        for index, (old, new) in enumerate(zip(before, after)):
            found = find_change(old, new, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(before, dict):
        if list(before) != list(after):
            gone, added = [k for k in before if k not in after], [k for k in after if k not in before]
            return f"`{path}` changed its keys (removed {gone}, added {added})."
        return next((found for key in before if (found := find_change(before[key], after[key], f"{path}[{key!r}]"))),
                    None)
    if dataclasses.is_dataclass(before):
        return next((found for field in dataclasses.fields(before)
                     if (found := find_change(getattr(before, field.name), getattr(after, field.name),
                                              f"{path}.{field.name}"))), None)
    if type(before) in (int, float, str, bool, type(None), complex, bytes) and before != after:
        return f"`{path}` was {before!r}, after your call it is {after!r}."
    return None


def _tensor_change(before: torch.Tensor, after: torch.Tensor, path: str) -> str | None:
    if after.shape != before.shape or after.dtype != before.dtype:
        return (f"`{path}` changed from shape {list(before.shape)} {before.dtype} to shape {list(after.shape)} "
                f"{after.dtype}.")
    after = after.detach()
    before = before.detach()
    same = after == before
    if before.is_floating_point() or before.is_complex():
        same |= after.isnan() & before.isnan()
    if bool(same.all()):
        return None
    where = tuple(int(i) for i in (~same).nonzero()[0])
    return f"`{path}` changed at {list(where)}: it was {before[where].item():.6g}, after your call it is " \
           f"{after[where].item():.6g}."
