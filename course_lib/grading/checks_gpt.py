"""Checks for notebook 01 (GPT-1): causal masked self-attention, and GPT-1's multiple-choice input format.

- ``causal_attention``: the student's ``fn(query, key, value, attention_mask=None) -> (output, weights)`` computes
  softmax(Q K^T / sqrt(d_k) + M) V where M hides every key to the right of the query (Radford et al. 2018, Sec. 3.1:
  "masked multi-headed self-attention") and, given ``attention_mask [batch, tokens]`` (1 = token, 0 = padding), every
  padded key. Shapes: ``[batch, heads, tokens, d]`` in, weights ``[batch, heads, tokens, tokens]``. The padded case
  pads on the LEFT (as batches of prompts are, so that each ends at the last position), where real tokens have
  padding to their left; rows of padding queries are not graded (a model never uses their outputs).
- ``multiple_choice_input``: ``fn(context, answers, tokens, max_length) -> (input_ids, attention_mask)``, one row
  ``start context delim answer_k extract`` per candidate (Figure 1), right-padded with ``tokens.pad``; a row longer
  than ``max_length`` loses tokens from the start of its context (``course_lib.models.gpt_tasks``).

Every call draws fresh shapes and values (``seed=None``); a wrong answer is compared with the known mistakes to name
the one it matches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from course_lib.grading.compare import describe_difference, is_close
from course_lib.grading.errors import CheckFailure
from course_lib.grading.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.registry import register
from course_lib.grading.runner import call_student
from course_lib.models.gpt_tasks import TaskTokens, multiple_choice_batch

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
    tokens = weights.shape[-1]
    future = torch.ones(tokens, tokens).triu(1).bool().expand_as(weights)
    leaked = future & ~(weights.abs() <= 1e-6)  # NaN counts as a leak too
    if bool(leaked.any()):
        where = [int(i) for i in leaked.nonzero()[0]]
        raise CheckFailure(f"({label}) query {where[2]} puts weight {weights[tuple(where)].item():.4g} on key "
                           f"{where[3]}, to its right: the future leaks.", details=_weights_rows(weights, attention_mask),
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


def _weights_rows(weights: torch.Tensor, attention_mask: torch.Tensor | None, example: int | None = None
                  ) -> list[str]:
    """One example's first head, rounded, as a student reads it (the first padded example when there is padding)."""
    if example is None:
        padded = [] if attention_mask is None else (attention_mask == 0).any(-1).nonzero().flatten().tolist()
        example = padded[0] if padded else 0
    lines = [f"Your weights[{example}, 0] (rows: queries, columns: keys; padding query rows are not graded):"]
    lines += ["  [" + ", ".join(f"{v:5.2f}" for v in row) + "]" for row in weights[example, 0].tolist()]
    if attention_mask is not None:
        lines.append(f"attention_mask[{example}] = {attention_mask[example].tolist()}")
    return lines


# --- multiple-choice input ------------------------------------------------------------------------------------------


def _mc_variant(context: list[int], answers: list[list[int]], tokens: TaskTokens, max_length: int,
                mistake: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference batch, or one known mistake of it."""
    start, delim, extract, pad = tokens.start, tokens.delimiter, tokens.extract, tokens.pad
    layouts = {
        "no start token": lambda a: [*context, delim, *a, extract],
        "no extract token": lambda a: [start, *context, delim, *a],
        "no delimiter": lambda a: [start, *context, *a, extract],
        "answer before the context": lambda a: [start, *a, delim, *context, extract],
        "delimiter and extract swapped": lambda a: [start, *context, extract, *a, delim],
    }
    rows = []
    for answer in answers:
        row = layouts.get(mistake, lambda a: [start, *context, delim, *a, extract])(answer)
        excess = len(row) - max_length
        if excess > 0 and mistake not in layouts:
            if mistake == "context cut at its end":
                row = [start, *context[: len(context) - excess], delim, *answer, extract]
            elif mistake == "not truncated":
                pass
            elif mistake == "row cut at its end":
                row = row[:max_length]
            else:
                row = [start, *context[excess:], delim, *answer, extract]
        rows.append(row)
    length = max(len(r) for r in rows)
    fill = 0 if mistake == "padded with 0" else pad
    ids = torch.full((len(rows), length), fill, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        where = slice(length - len(row), length) if mistake == "left padding" else slice(0, len(row))
        ids[i, where] = torch.tensor(row)
        mask[i, where] = 1
    if mistake == "mask inverted":
        mask = 1 - mask
    return ids, mask


_MC_MISTAKES = [
    ("no start token", "every row begins with tokens.start."),
    ("no extract token", "every row ends with tokens.extract: its final state is what the linear head reads."),
    ("no delimiter", "put tokens.delimiter between the context and the answer."),
    ("answer before the context", "the context comes first: start, context, delimiter, answer, extract."),
    ("delimiter and extract swapped", "the delimiter separates context and answer; extract closes the row."),
    ("left padding", "pad on the right: the real tokens start at position 0, padding fills the end of a row."),
    ("padded with 0", "pad with tokens.pad (this call's pad id is not 0)."),
    ("mask inverted", "attention_mask is 1 on real tokens and 0 on padding."),
    ("context cut at its end", "drop tokens from the START of the context: its end, next to the answer, stays."),
    ("row cut at its end", "never cut the answer or the extract token: drop tokens from the start of the context."),
    ("not truncated", "a row longer than max_length loses tokens from the start of its context."),
]


def _names(tokens: TaskTokens) -> dict[int, str]:
    return {tokens.start: "<s>", tokens.delimiter: "$", tokens.extract: "<e>", tokens.pad: "pad"}


def _show(row: list[int], names: dict[int, str]) -> str:
    return "[" + " ".join(names.get(i, str(i)) for i in row) + "]"


def _draw_mc_case(draw: random.Random, truncate: bool):
    """Context, candidate answers, task tokens (pad id not 0) and a max_length that truncates or not."""
    special = draw.sample(range(100, 110), 3)
    tokens = TaskTokens(start=special[0], delimiter=special[1], extract=special[2], pad=draw.randint(1, 9))
    context = [draw.randint(10, 99) for _ in range(draw.randint(4, 10))]
    answers = [[draw.randint(10, 99) for _ in range(draw.randint(1, 5))] for _ in range(draw.randint(2, 4))]
    answers[draw.randrange(len(answers))] = [draw.randint(10, 99) for _ in range(draw.randint(6, 7))]  # one long
    longest = 3 + len(context) + max(len(a) for a in answers)
    max_length = longest - draw.randint(2, 3) if truncate else longest + draw.randint(0, 8)
    return context, answers, tokens, max_length


@register("multiple_choice_input", title="GPT-1 input format: multiple choice")
def multiple_choice_input(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(context, answers, tokens, max_length) -> (input_ids, attention_mask)`` on two drawn cases."""
    draw = random.Random(seed)
    for label, truncate in (("rows that fit", False), ("rows longer than max_length", True)):
        context, answers, tokens, max_length = _draw_mc_case(draw, truncate)
        answer = call_student(fn, context, answers, tokens, max_length)
        _grade_mc(answer, context, answers, tokens, max_length, label)
    return ("one row per candidate, start context delim answer extract, right-padded with tokens.pad, the context cut "
            "from its start when a row is too long.")


def _grade_mc(answer: object, context: list[int], answers: list[list[int]], tokens: TaskTokens, max_length: int,
              label: str) -> None:
    """Compare one answer with ``multiple_choice_batch``; name the known mistake it matches."""
    ids_ref, mask_ref = multiple_choice_batch(context, answers, tokens, max_length)
    answer = expect_sequence(answer, "your answer", "two tensors (input_ids, attention_mask)",
                             hint="end with `return input_ids, attention_mask`.")
    if len(answer) != 2:
        raise CheckFailure(f"({label}) expected a pair (input_ids, attention_mask), got {len(answer)} items.",
                           hint="end with `return input_ids, attention_mask`.")
    hint = "build the rows as lists, then `torch.tensor(rows, dtype=torch.long)` after padding them."
    ids = expect_exact_tensor(answer[0], "input_ids", hint=hint)
    mask = expect_exact_tensor(answer[1], "attention_mask", hint=hint)
    for name, got in (("input_ids", ids), ("attention_mask", mask)):
        if got.dtype != torch.long or got.dim() != 2 or got.shape[0] != len(answers):
            raise CheckFailure(f"({label}) `{name}` should be a torch.long tensor [choices={len(answers)}, tokens], "
                               f"got {got.dtype} of shape {list(got.shape)}.",
                               hint="one row per candidate answer, integer ids (dtype=torch.long).")
    names = _names(tokens)
    call = f"context {context}, answers {answers}, tokens {tokens}, max_length {max_length}"
    if torch.equal(ids, ids_ref) and torch.equal(mask, mask_ref):
        return
    for mistake, mistake_hint in _MC_MISTAKES:
        wrong_ids, wrong_mask = _mc_variant(context, answers, tokens, max_length, mistake)
        if wrong_ids.shape == ids.shape and torch.equal(ids, wrong_ids) and torch.equal(mask, wrong_mask):
            raise CheckFailure(f"({label}) this looks like '{mistake}'.",
                               details=[call, *_row_diff(ids, ids_ref, names)], hint=mistake_hint)
    if ids.shape != ids_ref.shape:
        raise CheckFailure(f"({label}) input_ids has shape {list(ids.shape)}, expected {list(ids_ref.shape)}.",
                           details=[call, *_row_diff(ids, ids_ref, names)],
                           hint="pad every row to the longest row, after truncating rows longer than max_length.")
    if not torch.equal(ids, ids_ref):
        raise CheckFailure(f"({label}) wrong input_ids.", details=[call, *_row_diff(ids, ids_ref, names)],
                           hint="each row: start, context, delimiter, answer, extract, then padding.")
    row = int((mask != mask_ref).any(-1).nonzero()[0])
    raise CheckFailure(f"({label}) input_ids are right but attention_mask row {row} is wrong.",
                       details=[f"Got      {mask[row].tolist()}", f"Expected {mask_ref[row].tolist()}"],
                       hint="1 on every real token (task tokens included), 0 on padding.")


def _row_diff(ids: torch.Tensor, ids_ref: torch.Tensor, names: dict[int, str]) -> list[str]:
    """The first row that differs (or the first row), got vs expected, with task tokens named."""
    rows = min(len(ids), len(ids_ref))
    different = [i for i in range(rows) if ids[i].tolist() != ids_ref[i].tolist()]
    row = different[0] if different else 0
    return [f"Row {row}, got      {_show(ids[row].tolist(), names)}",
            f"Row {row}, expected {_show(ids_ref[row].tolist(), names)}   (<s> start, $ delimiter, <e> extract)"]

