"""Tensor comparisons that explain themselves: shape, dtype, non-finite values, the largest difference.

Each function either returns quietly or raises :class:`~course_lib.grading.runtime.runner.CheckFailure` whose message and
details tell the student what was expected and what came back, with a small counter-example.
"""

from __future__ import annotations

from typing import Any

import torch

from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor


def expect_tensor(value: Any, name: str, *, shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None,
                  finite: bool = True, hint: str | None = None) -> torch.Tensor:
    """Return ``value`` if it is a plain tensor of this shape and dtype (no NaN/inf when ``finite``); fail otherwise."""
    value = expect_exact_tensor(value, name)  # None, a list, a subclass: refused before any method is called
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailure(f"`{name}` has the wrong shape.",
                           details=[f"Expected shape {list(shape)}", f"Got shape      {list(value.shape)}"], hint=hint)
    if dtype is not None and value.dtype != dtype:
        raise CheckFailure(f"`{name}` has the wrong dtype.",
                           details=[f"Expected dtype {dtype}", f"Got dtype      {value.dtype}"], hint=hint)
    if finite and value.is_floating_point():
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            where = _position(bad.nonzero()[0])
            what = "NaN" if bool(value.isnan().any()) else "inf"
            raise CheckFailure(
                f"`{name}` contains {what}: {int(bad.sum())} of {value.numel()} values are not finite.",
                details=[f"First at {where}: {value[tuple(bad.nonzero()[0])].item()}"],
                hint=hint or "NaN usually comes from inf - inf, 0/0 or the log/softmax of a row that is all -inf.")
    return value


def is_close(got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when shapes agree and every value is within ``atol + rtol * |expected|`` (NaN equals NaN)."""
    if got.shape != expected.shape:
        return False
    return bool(torch.isclose(got.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=True).all())


def assert_close(got: torch.Tensor, expected: torch.Tensor, name: str, *, atol: float = 1e-5, rtol: float = 1e-4,
                 hint: str | None = None) -> None:
    """Fail with the location and size of the largest difference and the row around it, unless close."""
    expect_tensor(got, name, shape=tuple(expected.shape), dtype=expected.dtype, finite=False)
    if is_close(got, expected, atol, rtol):
        return
    raise CheckFailure(f"`{name}` has the right shape but wrong values.",
                       details=describe_difference(got, expected, name, atol=atol, rtol=rtol), hint=hint)


def describe_difference(got: torch.Tensor, expected: torch.Tensor, name: str, *, atol: float = 1e-5,
                        rtol: float = 1e-4) -> list[str]:
    """Lines naming the largest difference, how many values are off, and the row (last axis) that holds it."""
    got64, expected64 = got.double(), expected.double()
    difference = (got64 - expected64).abs().nan_to_num(nan=float("inf"))
    outside = difference > atol + rtol * expected64.abs()
    index = tuple(int(i) for i in torch.unravel_index(difference.argmax(), difference.shape))
    lines = [
        f"Largest difference at {list(index)}: got {_number(got64[index])}, expected {_number(expected64[index])}"
        f" (tolerance {atol:g} + {rtol:g} * |expected|).",
        f"{int(outside.sum())} of {got.numel()} values are outside the tolerance.",
    ]
    if got.dim() >= 1:
        row = index[:-1]
        label = f"{name}[{', '.join(str(i) for i in row)}{', ' if row else ''}:]"
        lines += [f"Counter-example, {label}:", f"  got      {_row(got64[row])}", f"  expected {_row(expected64[row])}"]
    return lines


def _row(values: torch.Tensor, limit: int = 8) -> str:
    """A short printable row: at most ``limit`` values, 4 significant digits."""
    shown = ", ".join(_number(v) for v in values.flatten()[:limit])
    return f"[{shown}{', ...' if values.numel() > limit else ''}]"


def _number(value: torch.Tensor | float) -> str:
    """One value with 4 significant digits."""
    return f"{float(value):.4g}"


def _position(index: torch.Tensor) -> list[int]:
    """A tensor index as a plain list."""
    return [int(i) for i in index]
