"""Checks for notebook 01 (GPT-1), its mechanism: causal masked self-attention.

- ``causal_attention``: the student's ``fn(query, key, value, attention_mask=None) -> (output, weights)`` computes
  softmax(Q K^T / sqrt(d_k) + M) V where M hides every key to the right of the query (Radford et al. 2018, Sec. 3.1:
  "masked multi-headed self-attention") and, given ``attention_mask [batch, tokens]`` (1 = token, 0 = padding), every
  padded key. Shapes: ``[batch, heads, tokens, d]`` in, weights ``[batch, heads, tokens, tokens]``. The padded case
  pads on the LEFT (as batches of prompts are, so that each ends at the last position), where real tokens have
  padding to their left; rows of padding queries are not graded (a model never uses their outputs).

GPT-1's input formats are checked in ``nb01_input_formats``. Every call draws fresh shapes and values
(``seed=None``); a wrong answer is compared with the known mistakes to name the one it matches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student

# --- causal attention -----------------------------------------------------------------------------------------------


def _causal_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, *, causal: str = "lower", padding: str = "keys",
                      scale: float | None = None, softmax_dim: int = -1, mask_mode: str = "fill"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention, with switches that reproduce the known mistakes; returns ``(output, weights)``."""
    tokens = query.shape[-2]
    rows, cols = torch.arange(tokens)[:, None], torch.arange(tokens)[None, :]
    visible = {"lower": cols <= rows, "upper": cols >= rows, "strict": cols < rows,
               "none": torch.ones(tokens, tokens, dtype=torch.bool)}[causal]  # [query, key]
    if attention_mask is not None and padding != "ignored":
        real = attention_mask != 0 if padding != "inverted" else attention_mask == 0  # [batch, tokens]
        visible = visible & real[:, None, None, :]  # [batch, 1, query, key]
    scores = query @ key.transpose(-2, -1) / (math.sqrt(query.shape[-1]) if scale is None else scale)
    if mask_mode == "fill":
        scores = scores.masked_fill(~visible, float("-inf"))
    elif mask_mode == "multiply":
        scores = scores * visible
    weights = scores.softmax(dim=softmax_dim)  # [batch, heads, query, key]
    if mask_mode == "after":
        weights = weights * visible
    return weights @ value, weights


# (name, keyword arguments of _causal_reference, needs padding, hint); tried in this order.
_ATTENTION_MISTAKES = [
    ("no causal mask", {"causal": "none"}, False,
     "hide every key to the right of the query: scores[..., i, j] = -inf for j > i, before the softmax."),
    ("the mask hides the past", {"causal": "upper"}, False,
     "keep j <= i (torch.tril), not j >= i: a token may look at itself and to its left, never to its right."),
    ("a token cannot see itself", {"causal": "strict"}, False,
     "keep the diagonal: j <= i, not j < i (torch.tril(..., diagonal=0)). Token 0 otherwise sees nothing: NaN."),
    ("scores multiplied by the mask", {"mask_mode": "multiply"}, False,
     "multiplying a score by 0 gives 0, and exp(0) = 1 is not 0: use scores.masked_fill(~visible, float('-inf'))."),
    ("mask applied after the softmax", {"mask_mode": "after"}, False,
     "hide keys on the scores, before the softmax; zeroing weights after it leaves rows that no longer sum to 1."),
    ("forgot sqrt(d_k)", {"scale": 1.0}, False, "divide the scores by sqrt(d_k) (Vaswani et al. 2017, Eq. 1)."),
    ("divided by d_k", {"scale": "d_k"}, False, "divide by sqrt(d_k), not by d_k: `scores / math.sqrt(d_k)`."),
    ("softmax over the queries", {"softmax_dim": -2}, False,
     "the softmax runs over the keys (the last axis, dim=-1): each query's weights sum to 1."),
    ("padding keys not hidden", {"padding": "ignored"}, True,
     "hide the padded KEYS (the last axis of the scores): where attention_mask[b, j] == 0, key j gets -inf for every "
     "query of example b, e.g. with attention_mask[:, None, None, :]."),
    ("padding mask inverted", {"padding": "inverted"}, True,
     "attention_mask holds 1 for a real token and 0 for padding: hide where it is 0."),
]


def _draw_attention_case(draw: random.Random, generator: torch.Generator, padded: bool):
    """Random ``query, key, value [batch, heads, tokens, d]`` and a left-padding mask (or None)."""
    batch, heads, tokens, d_k = draw.randint(2, 3), draw.randint(1, 3), draw.randint(4, 8), draw.choice([4, 6, 8])
    query, key, value = (2 * torch.randn(batch, heads, tokens, d_k, generator=generator) for _ in range(3))
    attention_mask = None
    if padded:  # left padding: one full row, the others start with 1 .. tokens - 2 padding positions
        lengths = [tokens] + [draw.randint(2, tokens - 1) for _ in range(batch - 1)]
        draw.shuffle(lengths)
        starts = tokens - torch.tensor(lengths)[:, None]  # [batch, 1]
        attention_mask = (torch.arange(tokens)[None, :] >= starts).long()  # [batch, tokens]
    return query, key, value, attention_mask


@register("causal_attention", title="Causal (masked) self-attention")
def causal_attention(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(query, key, value, attention_mask=None) -> (output, weights)`` without and with left padding."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for label, padded in (("no padding", False), ("left padding", True)):
        query, key, value, attention_mask = _draw_attention_case(draw, generator, padded)
        arguments = (query, key, value) if attention_mask is None else (query, key, value, attention_mask)
        answer = call_student(fn, *arguments, error_hints=[
            (r"(size|shape)", "the scores are query @ key.transpose(-2, -1): [..., tokens, d] @ [..., d, tokens]; "
                              "a mask of [tokens, tokens] broadcasts over batch and heads, a padding mask needs "
                              "attention_mask[:, None, None, :].")])
        _grade_attention(answer, query, key, value, attention_mask, label)
    return ("weights and output match softmax(Q K^T / sqrt(d_k), keys to the right and padded keys hidden) V, "
            "with and without padding; no position sees the future.")


def _grade_attention(answer: object, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, label: str) -> None:
    """Compare one answer with the reference; name the known mistake it matches."""
    output_ref, weights_ref = _causal_reference(query, key, value, attention_mask)
    answer = expect_sequence(answer, "your answer", "two tensors (output, weights)",
                             hint="end with `return output, weights`.")
    if len(answer) != 2:
        raise CheckFailure(f"({label}) expected a pair (output, weights), got {len(answer)} items.",
                           hint="end with `return output, weights`.")
    output = expect_exact_tensor(answer[0], "output")
    weights = expect_exact_tensor(answer[1], "weights")
    if tuple(output.shape) == tuple(weights_ref.shape) and tuple(weights.shape) == tuple(output_ref.shape) \
            and output.shape != weights.shape:
        raise CheckFailure(f"({label}) output and weights came back in swapped order.",
                           hint="return `output, weights` (the output first).")
    for name, got, expected in (("weights", weights, weights_ref), ("output", output, output_ref)):
        if tuple(got.shape) != tuple(expected.shape) or got.dtype != expected.dtype:
            raise CheckFailure(f"({label}) `{name}` should be a {expected.dtype} tensor of shape "
                               f"{list(expected.shape)}, got {got.dtype} of shape {list(got.shape)}.",
                               hint="weights are [batch, heads, query, key]; output is [batch, heads, tokens, d_v], "
                                    "like value.")
    graded = _graded_rows(weights_ref, attention_mask).bool()
    weights, output = weights.detach(), output.detach()
    if not is_close(*(torch.where(graded, w, torch.zeros(())) for w in (weights, weights_ref))):
        _name_attention_mistake(weights, query, key, value, attention_mask, label)
    output, output_ref = (torch.where(graded, o, torch.zeros(())) for o in (output, output_ref))
    if not is_close(output, output_ref):
        raise CheckFailure(f"({label}) the weights are right but the output is not.",
                           details=describe_difference(output, output_ref, "output"), hint="output = weights @ value.")


def _graded_rows(like: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """1.0 on the rows of real queries, 0.0 on padding queries (not graded), broadcastable to ``like``."""
    if attention_mask is None:
        return torch.ones(1, dtype=like.dtype)
    return attention_mask[:, None, :, None].to(like.dtype)  # [batch, 1, query, 1]


def _name_attention_mistake(weights: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, label: str) -> None:
    """Raise a CheckFailure naming the first known mistake ``weights`` matches, else the future leak or the row."""
    graded = _graded_rows(weights, attention_mask)
    weights = torch.where(graded.bool(), weights, torch.zeros(()))  # padding queries: not graded, NaN allowed
    for name, options, needs_padding, hint in _ATTENTION_MISTAKES:
        if needs_padding and attention_mask is None:
            continue
        options = {**options, "scale": query.shape[-1]} if options.get("scale") == "d_k" else options
        mistake = _causal_reference(query, key, value, attention_mask, **options)[1]
        if is_close(weights, torch.where(graded.bool(), mistake, torch.zeros(()))):
            raise CheckFailure(f"({label}) wrong weights: this looks like '{name}'.",
                               details=_weights_rows(weights, attention_mask), hint=hint)
    if bool(weights.isnan().any()):
        where = [int(i) for i in weights.isnan().nonzero()[0]]
        raise CheckFailure(f"({label}) your weights hold NaN: example {where[0]}, head {where[1]}, query {where[2]} "
                           f"(key {where[3]}) is NaN, below for that example and head.",
                           details=_weights_rows(weights, attention_mask, where[0], where[1]),
                           hint="NaN comes from 0/0 or inf/inf: a row whose scores are all -inf (every key hidden), "
                                "or a hand-written softmax whose exp overflows. Use scores.softmax(dim=-1), or "
                                "subtract each row's max before exp; a query always sees its own key.")
    tokens = weights.shape[-1]
    future = torch.ones(tokens, tokens).triu(1).bool().expand_as(weights)
    leaked = future & ~(weights.abs() <= 1e-6)  # NaN counts as a leak too
    if bool(leaked.any()):
        where = [int(i) for i in leaked.nonzero()[0]]
        raise CheckFailure(f"({label}) query {where[2]} puts weight {weights[tuple(where)].item():.4g} on key "
                           f"{where[3]}, to its right: the future leaks.",
                           details=_weights_rows(weights, attention_mask, where[0], where[1]),
                           hint="every weight above the diagonal must be exactly 0: -inf on those scores before the "
                                "softmax.")
    if attention_mask is not None:
        padded_keys = (attention_mask == 0)[:, None, None, :] & graded.bool()  # [batch, 1, query, key]
        seen = padded_keys & ~(weights.abs() <= 1e-6)
        if bool(seen.any()):
            where = [int(i) for i in seen.nonzero()[0]]
            raise CheckFailure(f"({label}) in example {where[0]}, query {where[2]} puts weight "
                               f"{weights[tuple(where)].item():.4g} on key {where[3]}, which is padding.",
                               details=_weights_rows(weights, attention_mask, where[0]),
                               hint="hide the padded keys too: -inf where attention_mask[b, j] == 0.")
    reference = torch.where(graded.bool(), _causal_reference(query, key, value, attention_mask)[1], torch.zeros(()))
    raise CheckFailure(f"({label}) wrong weights.", details=describe_difference(weights, reference, "weights"),
        hint="weights = softmax(query @ key^T / sqrt(d_k) with hidden keys at -inf, dim=-1).")


def _weights_rows(weights: torch.Tensor, attention_mask: torch.Tensor | None, example: int | None = None,
                  head: int = 0) -> list[str]:
    """One example's head, rounded, as a student reads it (default: the first padded example, head 0)."""
    if example is None:
        padded = [] if attention_mask is None else (attention_mask == 0).any(-1).nonzero().flatten().tolist()
        example = padded[0] if padded else 0
    lines = [f"Your weights[{example}, {head}] (rows: queries, columns: keys; padding query rows are not graded):"]
    lines += ["  [" + ", ".join(f"{v:5.2f}" for v in row) + "]" for row in weights[example, head].tolist()]
    if attention_mask is not None:
        lines.append(f"attention_mask[{example}] = {attention_mask[example].tolist()}")
    return lines
