"""Checks for notebook 05 (GPT-2): top-k and nucleus filtering, the pre-LN stack, and LM fine-tuning within a budget.

- ``sampling_filters``: ``top_k(logits, k)`` and ``nucleus(logits, p)`` return the *renormalised* distribution
  ``[batch, vocab]`` that sampling draws from: the k most likely tokens (Fan et al. 2018), or the smallest set of
  most likely tokens whose probabilities add up to at least p (Holtzman et al. 2020), 0 elsewhere.
- ``pre_ln_stack``: the pre-LN stack, the final LayerNorm and the scaled init; in ``nb05_pre_ln_stack``.
- ``lm_fine_tuning``: the final exercise; see ``course_lib.grading.fine_tuning.lm_check``.

The first two draw fresh shapes and values at every call (``seed=None``) and name the known mistake a wrong answer
matches; the last owns its model, training text, held-out text and budget (``course_lib.grading.fine_tuning.lm_tasks``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student
from course_lib.models.generation import top_k_filter, top_p_filter

# --- top-k and nucleus filtering ------------------------------------------------------------------------------------


def _top_k_variant(logits: torch.Tensor, k: int, mistake: str = "") -> torch.Tensor:
    """The top-k distribution, or one known mistake of it."""
    vocab = logits.size(-1)
    if mistake == "not renormalised":
        return logits.softmax(-1) * (top_k_filter(logits, k) > float("-inf"))
    if mistake == "sorted order":
        return torch.zeros_like(logits).scatter(-1, torch.arange(k).expand(logits.size(0), k),
                                                logits.topk(k, -1).values.softmax(-1))
    kept = {"k + 1 kept": min(k + 1, vocab), "k - 1 kept": max(k - 1, 0)}.get(mistake, k)
    if kept == 0:
        return torch.full_like(logits, float("nan"))
    order = logits.topk(kept, -1, largest=mistake != "least likely kept").indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, True)
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


def _nucleus_variant(logits: torch.Tensor, p: float, mistake: str = "") -> torch.Tensor:
    """The nucleus distribution, or one known mistake of it."""
    if mistake == "":
        return top_p_filter(logits, p).softmax(-1)
    descending = mistake != "least likely first"
    ordered, order = logits.sort(-1, descending=descending)
    probabilities = ordered.softmax(-1)
    if mistake == "unsorted cumsum":
        ordered, order, probabilities = logits, torch.arange(logits.size(-1)).expand_as(logits), logits.softmax(-1)
    cumulative = probabilities.cumsum(-1)
    above = cumulative - probabilities  # mass of the tokens ranked above
    keep = {"cumsum includes the token": cumulative < p,
            "one token too many": torch.cat([torch.ones_like(above[..., :1], dtype=torch.bool),
                                             above[..., :-1] < p], -1)}.get(mistake, above < p)
    if mistake == "not renormalised":
        kept = probabilities * keep
    else:
        kept = ordered.masked_fill(~keep, float("-inf")).softmax(-1)  # an empty nucleus gives NaN
    if mistake == "sorted order":
        return kept
    return torch.zeros_like(kept).scatter(-1, order, kept)


_TOP_K_MISTAKES = [
    ("k + 1 kept", "off by one: keep exactly k tokens (`torch.topk(logits, k)`), not k + 1."),
    ("k - 1 kept", "off by one: keep exactly k tokens; with `logits < kth` the k-th largest itself stays."),
    ("least likely kept", "keep the LARGEST logits (`torch.topk(..., largest=True)`, the default): the most likely "
                          "tokens stay."),
    ("not renormalised", "after dropping tokens, renormalise: softmax over the kept logits (the others at -inf), "
                         "so the row sums to 1."),
    ("sorted order", "put each probability back at its token's position in the vocabulary (`scatter` with the "
                     "indices from `topk`/`sort`), not in sorted order."),
]
_NUCLEUS_MISTAKES = [
    ("cumsum includes the token", "off by one in the cumulative sum: a token stays when the mass ranked ABOVE it is "
                                  "< p (`cumsum - probs < p`), so the token that crosses p is kept too."),
    ("one token too many", "off by one: keep tokens while the mass above them is < p; you keep one more."),
    ("least likely first", "sort descending (`sort(descending=True)`): the nucleus is the most likely tokens."),
    ("unsorted cumsum", "sort the probabilities (descending) before the cumulative sum; the vocabulary order means "
                        "nothing."),
    ("not renormalised", "after dropping tokens, renormalise: softmax over the kept logits (the others at -inf), "
                         "so the row sums to 1."),
    ("sorted order", "put each probability back at its token's position in the vocabulary (`scatter` with the "
                     "indices from `sort`), not in sorted order."),
]


def _draw_logits(draw: random.Random, generator: torch.Generator, dominant: bool) -> torch.Tensor:
    """Random logits ``[batch, vocab]`` (sizes drawn); ``dominant`` puts > 95% of each row on one token."""
    batch, vocab = draw.randint(2, 4), draw.randint(9, 40)
    logits = 2.0 * torch.randn(batch, vocab, generator=generator)
    while not dominant and float(logits.softmax(-1).max()) > 0.85:  # ordinary rows: no token near the whole mass
        logits = 2.0 * torch.randn(batch, vocab, generator=generator)
    if dominant:
        rows = torch.arange(batch)
        logits[rows, torch.randint(vocab, (batch,), generator=generator)] += 12.0
    return logits


def _grade_distribution(answer: object, expected: torch.Tensor, call: str, label: str, variants, mistakes,
                        empty_first: bool = False) -> None:
    """Compare one answer with the expected distribution; name the known mistake it matches.

    ``empty_first``: on rows where one token dominates, an empty row (all 0 or NaN) is named before the mistakes.
    """
    got = expect_exact_tensor(answer, "your answer", hint="return the probabilities as one tensor [batch, vocab].")
    if tuple(got.shape) != tuple(expected.shape) or not got.is_floating_point():
        raise CheckFailure(f"({label}) expected a float tensor of shape {list(expected.shape)} (like the logits), "
                           f"got {got.dtype} of shape {list(got.shape)}.",
                           hint="return one probability per vocabulary entry for every row: [batch, vocab].")
    got = got.detach().to(expected.dtype)
    if is_close(got, expected):
        return
    if bool((got < 0).any()) or bool(torch.isinf(got).any()):
        raise CheckFailure(f"({label}) your answer has negative or infinite entries: those are logits, not "
                           "probabilities.", details=[call], hint="end with a softmax over the filtered logits.")
    empty = bool(got.isnan().any()) or bool((got.sum(-1) < 1e-6).any())
    for name, hint in [] if empty and empty_first else mistakes:
        if is_close(got, variants(name)):
            raise CheckFailure(f"({label}) this looks like '{name}'.",
                               details=[call, *describe_difference(got, expected, "probabilities")], hint=hint)
    if empty:
        raise CheckFailure(f"({label}) a row came back empty (all zero or NaN): you dropped the most likely token.",
                           details=[call], hint="the most likely token always stays: it alone may already hold more "
                                                "than p (or k is 1), and an empty set cannot be sampled from.")
    raise CheckFailure(f"({label}) wrong probabilities.", details=[call, *describe_difference(got, expected,
                                                                                                "probabilities")],
                       hint="keep the chosen tokens' logits, set the others to -inf, then softmax over the vocabulary.")


@register("sampling_filters", title="Top-k and nucleus (top-p) filtering")
def sampling_filters(top_k: Callable, nucleus: Callable, *, seed: int | None = None) -> str:
    """Grade ``top_k(logits, k)`` and ``nucleus(logits, p)`` -> renormalised probabilities ``[batch, vocab]``."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for label, dominant in (("ordinary rows", False), ("one token holds > 95%", True)):
        logits = _draw_logits(draw, generator, dominant)
        k = 1 if dominant else draw.randint(2, logits.size(-1) - 2)
        call = f"top_k(logits of shape {list(logits.shape)}, k={k})"
        answer = call_student(top_k, logits, k)
        _grade_distribution(answer, _top_k_variant(logits, k), call, f"top-k, {label}",
                            lambda name: _top_k_variant(logits, k, name), _TOP_K_MISTAKES, dominant)
        # On ordinary rows p exceeds every row's top probability, so that no known mistake empties a row there:
        # an empty row is graded on the dominant rows, where it is the only way to go wrong.
        low = 0.3 if dominant else max(0.3, float(logits.softmax(-1).max()) + 0.02)
        p = round(draw.uniform(low, max(low, 0.9)), 3)
        call = f"nucleus(logits of shape {list(logits.shape)}, p={p})"
        answer = call_student(nucleus, logits, p)
        _grade_distribution(answer, _nucleus_variant(logits, p), call, f"nucleus, {label}",
                            lambda name: _nucleus_variant(logits, p, name), _NUCLEUS_MISTAKES, dominant)
    return "top-k and nucleus distributions match, renormalised, in vocabulary order, on rows with and without a " \
           "dominant token."


# --- the final exercise: LM fine-tuning within a budget (its own module, imported for registration) ----------------

# --- the pre-LN stack (its own module, imported here for registration) --------------------------------------------
from course_lib.grading.checks import nb05_pre_ln_stack  # noqa: E402, F401  (registers pre_ln_stack)
