"""Check for the scaled dot-product attention exercise (Vaswani et al. 2017, Eq. 1).

The student's ``fn(query, key, value, mask=None)`` returns ``(output, weights)`` with
``weights = softmax(query @ key^T / sqrt(d_k) + mask)`` over the keys and ``output = weights @ value``.
Shapes: query ``[..., queries, d_k]``, key ``[..., keys, d_k]``, value ``[..., keys, d_v]``, mask broadcastable to
``[..., queries, keys]``. Every call draws fresh shapes (queries != keys != d_v, so a transposed or swapped answer
is told apart) and values; the reference is computed here with plain torch on the same draw; wrong answers are
compared with the known mistakes to give a hint.

No notebook's exercise sheet uses it (notebook 01 grades the causal variant, ``causal_attention``). It stays
registered as the grading's worked example: the re-grade's fixture notebook, the release test's tiny notebook and the
grading tests exercise the machinery through it, in fresh kernels and grader processes that load only the shipped
registry; a way to register checks from outside ``course_lib`` in those processes would be a door into the grader.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from course_lib.grading.runtime.compare import assert_close, describe_difference, expect_tensor, is_close
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError
from course_lib.grading.runtime.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student

_SHAPE_ERROR_HINT = (
    "a shape mismatch in a matrix product: the scores are query @ key.transpose(-2, -1), i.e. "
    "[..., queries, d_k] @ [..., d_k, keys]. `.T` reverses every axis of a 3-D or 4-D tensor: use `.transpose(-2, -1)`."
)


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, hidden: torch.Tensor | None, *,
               scale: float | None = None, softmax_dim: int = -1, scores_transposed: bool = False,
               mask_mode: str = "before") -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with optional known mistakes; ``hidden`` is True where a query may not see a key."""
    d_k = query.shape[-1]
    if scores_transposed:
        scores = key @ query.transpose(-2, -1)  # [..., keys, queries]: the transposed-scores mistake
    else:
        scores = query @ key.transpose(-2, -1)  # [..., queries, keys]
    scores = scores / (math.sqrt(d_k) if scale is None else scale)
    if hidden is not None and mask_mode == "before":
        scores = scores.masked_fill(hidden, float("-inf"))
    if hidden is not None and mask_mode == "wrong_sign":
        scores = scores.masked_fill(hidden, float("inf"))  # scores - mask: -(-inf) = +inf
    if hidden is not None and mask_mode == "inverted":
        scores = scores.masked_fill(~hidden, float("-inf"))  # hides the visible keys instead of the hidden ones
    weights = scores.softmax(dim=softmax_dim)
    if hidden is not None and mask_mode == "after_zero":
        weights = weights.masked_fill(hidden, 0.0)
    if hidden is not None and mask_mode == "after_add":
        weights = weights + torch.where(hidden, float("-inf"), 0.0)
    return weights @ value, weights  # [..., queries, d_v], [..., queries, keys]


# (name, keyword arguments of _attention that make the mistake, hint); tried in this order.
_MISTAKES = [
    ("forgot sqrt(d_k)", {"scale": 1.0},
     "divide the scores by sqrt(d_k) (Vaswani et al. 2017, Eq. 1): without it, large dot products push the softmax "
     "into regions with tiny gradients."),
    ("divided by d_k", {"scale": "d_k"}, "divide by sqrt(d_k), not by d_k: `scores / math.sqrt(d_k)`."),
    ("softmax over the queries", {"softmax_dim": -2},
     "the softmax runs over the keys (the last axis, `dim=-1`): each query's weights must sum to 1."),
    ("mask ignored", {"mask_mode": "none"}, "the mask was not applied: hidden positions must get weight 0."),
    ("mask after softmax (zeroed)", {"mask_mode": "after_zero"},
     "apply the mask to the scores *before* the softmax; zeroing weights after it leaves rows that no longer sum "
     "to 1."),
    ("mask after softmax (added)", {"mask_mode": "after_add"}, "add the mask to the scores *before* the softmax."),
    ("mask with the wrong sign", {"mask_mode": "wrong_sign"},
     "hidden positions need -inf *added* to their scores (you subtracted the mask)."),
    ("mask inverted", {"mask_mode": "inverted"},
     "you hid the visible keys: -inf goes where a query may NOT attend (check the mask's convention)."),
]


def _draw_shape(draw: random.Random, batch_dims: int) -> tuple[int, ...]:
    """``(*batch, queries, keys, d_k, d_v)`` with queries, keys and d_v all different."""
    queries, keys, d_v = draw.sample(range(2, 10), 3)
    return (*[draw.randint(1, 3) for _ in range(batch_dims)], queries, keys, draw.choice([4, 8, 16]), d_v)


@register("scaled_dot_product_attention", title="Scaled dot-product attention")
def scaled_dot_product_attention(fn: Callable, *, mask_style: str = "additive", seed: int | None = None) -> str:
    """Grade ``fn(query, key, value, mask=None) -> (output, weights)`` on a drawn 3-D case and a masked 4-D case.

    ``mask_style="additive"``: the mask is a float tensor added to the scores (0 visible, -inf hidden).
    ``mask_style="boolean"``: the mask is a bool tensor, True where a query may attend (torch's convention).
    """
    if mask_style not in ("additive", "boolean"):
        raise CheckUsageError(f"mask_style must be 'additive' or 'boolean', got {mask_style!r}")
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    cases = [("3-D, no mask", _draw_shape(draw, 1), False), ("4-D with a mask", _draw_shape(draw, 2), True)]
    for label, shape, with_mask in cases:
        *batch, queries, keys, d_k, d_v = shape
        scale = draw.uniform(0.5, 3.0)
        query = scale * torch.randn(*batch, queries, d_k, generator=generator)   # [..., queries, d_k]
        key = scale * torch.randn(*batch, keys, d_k, generator=generator)       # [..., keys, d_k]
        value = torch.randn(*batch, keys, d_v, generator=generator)             # [..., keys, d_v]
        hidden, mask = None, None
        if with_mask:
            density = draw.uniform(0.2, 0.6)
            hidden = torch.rand(batch[0], 1, queries, keys, generator=generator) < density  # [batch, 1, queries, keys]
            seen = draw.randrange(keys)
            hidden[..., seen] = False  # every query sees at least one key
            if not bool(hidden.any()):  # ... and some key is hidden (keys >= 2), else the mask would test nothing
                hidden[0, 0, 0, (seen + 1) % keys] = True
            mask = ~hidden if mask_style == "boolean" else torch.zeros(hidden.shape).masked_fill(hidden, float("-inf"))
        arguments = (query, key, value) if mask is None else (query, key, value, mask)
        answer = call_student(fn, *arguments, error_hints=[(r"RuntimeError.*(size|shape)", _SHAPE_ERROR_HINT)])
        try:
            _grade(answer, query, key, value, hidden, label)
        except CheckFailure as failure:  # name the case in every message
            if not failure.message.startswith(f"({label})"):
                failure.message = f"({label}) {failure.message}"
            raise
    return "output and weights match softmax(query @ key^T / sqrt(d_k) + mask) @ value (3-D without mask, 4-D with)."


def _grade(answer: object, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           hidden: torch.Tensor | None, label: str) -> None:
    """Compare one answer with the reference; name the known mistake it matches."""
    output_ref, weights_ref = _attention(query, key, value, hidden)
    answer = expect_sequence(answer, f"({label}) your answer", "two tensors", hint="end with `return output, weights`.")
    if len(answer) != 2:
        raise CheckFailure(f"({label}) expected a pair (output, weights), got {len(answer)} items.",
                           hint="end with `return output, weights`.")
    output = expect_exact_tensor(answer[0], "output")
    weights = expect_exact_tensor(answer[1], "weights")
    if output.shape == weights_ref.shape and weights.shape == output_ref.shape:
        raise CheckFailure(f"({label}) output and weights came back in swapped order.",
                           hint="return `output, weights` (the output first).")
    transposed = tuple(weights_ref.shape[:-2]) + (weights_ref.shape[-1], weights_ref.shape[-2])
    shape_hint = None
    if tuple(weights.shape) == transposed:
        shape_hint = "your weights are [..., keys, queries]: compute query @ key.transpose(-2, -1), not key @ query^T."
    weights = expect_tensor(weights, "weights", shape=tuple(weights_ref.shape), dtype=weights_ref.dtype,
                            finite=False, hint=shape_hint)
    if not is_close(weights, weights_ref):
        d_k = query.shape[-1]
        for name, options, hint in _MISTAKES:
            options = {**options, "scale": d_k} if options.get("scale") == "d_k" else options
            if name.startswith("mask") and hidden is None:
                continue
            if is_close(weights, _attention(query, key, value, hidden, **options)[1]):
                raise CheckFailure(f"({label}) wrong weights: this looks like '{name}'.",
                                   details=describe_difference(weights, weights_ref, "weights"), hint=hint)
        expect_tensor(weights, "weights", hint=(
            "NaN comes from inf - inf, 0/0 or a softmax over a row that is all -inf: this case has no mask, so look at "
            "the scores and their scaling." if hidden is None else
            "hidden positions need -inf *added* to the scores before the softmax (a row must keep one visible key)."))
        sums = weights.sum(dim=-1)
        hint = None if is_close(sums, torch.ones_like(sums)) else "each row of weights (one query) must sum to 1."
        raise CheckFailure(f"({label}) wrong weights.", details=describe_difference(weights, weights_ref, "weights"),
                           hint=hint)
    assert_close(expect_tensor(output, "output", shape=tuple(output_ref.shape), dtype=output_ref.dtype),
                 output_ref, "output", hint="the weights are right: output = weights @ value.")
