"""Checks for notebook 01 (GPT-1), its input transformations: the multiple-choice format.

- ``multiple_choice_input``: ``fn(context, answers, tokens, max_length) -> (input_ids, attention_mask)``, one row
  ``start context delim answer_k extract`` per candidate (Figure 1), right-padded with ``tokens.pad``; a row longer
  than ``max_length`` loses tokens from the start of its context (``course_lib.text.task_formats``).

Every call draws fresh contexts and answers (``seed=None``); a wrong answer is compared with the known mistakes to
name the one it matches.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student
from course_lib.text.task_formats import TaskTokens, multiple_choice_batch


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

