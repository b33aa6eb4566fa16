"""Check for the masked-LM exercise (Devlin et al. 2019, Sec. 3.1 and Appendix A.1).

The student's ``fn(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None)`` returns
``(masked_input_ids, labels)`` as :func:`course_lib.text.masking.mask_tokens` does. The check is statistical: it runs
the function on seeded BERT-like batches and accepts a rate when it lies within ``sigmas`` binomial standard deviations
of the expected one, so a correct answer fails with probability below about 1e-5 per rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_lib.grading.compare import expect_tensor
from course_lib.grading.registry import CheckUsageError, register
from course_lib.grading.runner import CheckFailure, call_student

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522  # bert-base-uncased's ids
SPECIAL_NAMES = {PAD: "[PAD]", CLS: "[CLS]", SEP: "[SEP]"}
IGNORE_INDEX = -100


def make_batch(generator: torch.Generator, rows: int = 64, tokens: int = 128) -> torch.Tensor:
    """BERT-like ids ``[rows, tokens]``: ``[CLS] A [SEP] (B [SEP]) [PAD]...`` with ordinary ids in [1000, VOCAB)."""
    input_ids = torch.randint(1000, VOCAB, (rows, tokens), generator=generator)  # [rows, tokens]
    for row in range(rows):
        length = int(torch.randint(16, tokens + 1, (1,), generator=generator))
        input_ids[row, 0], input_ids[row, length - 1], input_ids[row, length:] = CLS, SEP, PAD
        if row % 2:  # a sentence pair: one more [SEP] in the middle
            input_ids[row, length // 2] = SEP
    return input_ids


@dataclass
class _Counts:
    """Running totals over the calls: ordinary tokens, chosen ones and what they became."""

    eligible: int = 0
    chosen: int = 0
    masked: int = 0
    random: int = 0
    unchanged: int = 0


@register("mlm_masking", title="Masked LM: choose 15%, then 80/10/10")
def mlm_masking(fn: Callable, *, seed: int = 0, calls: int = 6, sigmas: float = 5.0) -> str:
    """Grade ``fn`` on ``calls`` seeded batches: output types, labels, special tokens, 15% and 80/10/10 rates."""
    if calls < 1 or sigmas <= 0:
        raise CheckUsageError(f"need calls >= 1 and sigmas > 0, got calls={calls}, sigmas={sigmas}")
    counts, random_ids = _Counts(), []
    for call in range(calls):
        generator = torch.Generator().manual_seed(seed * 1000 + call)
        input_ids = make_batch(generator)
        masked, labels = _call(fn, input_ids, 0.15, generator)
        random_ids.append(_grade_one(input_ids, masked, labels, counts))

    _expect_rate("chosen", counts.chosen, counts.eligible, 0.15, sigmas, "of the ordinary tokens", _selection_hint)
    _expect_split(counts, sigmas)
    drawn = torch.cat(random_ids)
    if drawn.numel() >= 20 and drawn.unique().numel() < drawn.numel() // 2:
        raise CheckFailure(f"the random replacements use only {drawn.unique().numel()} different ids "
                           f"in {drawn.numel()} replacements.",
                           hint="draw one random id per position: torch.randint(vocab_size, input_ids.shape, ...).")

    # The mlm_probability argument is used, not a hard-coded 0.15.
    other, generator = _Counts(), torch.Generator().manual_seed(seed * 1000 + 999)
    for _ in range(2):
        input_ids = make_batch(generator)
        _grade_one(input_ids, *_call(fn, input_ids, 0.3, generator), other)
    _expect_rate("chosen (with mlm_probability=0.3)", other.chosen, other.eligible, 0.3, sigmas,
                 "of the ordinary tokens", lambda rate, p: "use the `mlm_probability` argument, not a fixed 0.15.")
    _expect_reproducible(fn, seed)
    return (f"chose {counts.chosen / counts.eligible:.1%} of {counts.eligible} ordinary tokens; of those "
            f"{counts.masked / counts.chosen:.1%} [MASK], {counts.random / counts.chosen:.1%} random, "
            f"{counts.unchanged / counts.chosen:.1%} unchanged; special tokens never chosen.")


def _call(fn: Callable, input_ids: torch.Tensor, p: float, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Call the student's function; check it returns two long tensors shaped like ``input_ids``."""
    answer = call_student(fn, input_ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=[PAD, CLS, SEP],
                          mlm_probability=p, generator=generator)
    if isinstance(answer, torch.Tensor) or not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise CheckFailure(f"expected a pair (masked_input_ids, labels), got {type(answer).__name__}.",
                           hint="end with `return masked_input_ids, labels`.")
    masked, labels = answer
    if isinstance(masked, torch.Tensor) and bool((masked == IGNORE_INDEX).any()):
        raise CheckFailure("the first tensor contains -100: the pair came back in swapped order.",
                           hint="return `masked_input_ids, labels` (the inputs first).")
    masked = expect_tensor(masked, "masked_input_ids", shape=tuple(input_ids.shape), dtype=input_ids.dtype)
    labels = expect_tensor(labels, "labels", shape=tuple(input_ids.shape), dtype=torch.long)
    out_of_range = (masked < 0) | (masked >= VOCAB)
    if bool(out_of_range.any()):
        where = _first(out_of_range)
        raise CheckFailure(f"masked_input_ids holds id {int(masked[where])} at {list(where)}, outside [0, {VOCAB}).",
                           hint="random ids come from torch.randint(vocab_size, ...).")
    return masked, labels


def _grade_one(input_ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor, counts: _Counts) -> torch.Tensor:
    """Exact rules for one batch (labels, special tokens, untouched positions); add to ``counts``; return random ids."""
    special = torch.isin(input_ids, torch.tensor([PAD, CLS, SEP]))  # [rows, tokens]
    chosen = labels != IGNORE_INDEX
    wrong_label = chosen & (labels != input_ids)
    if bool(wrong_label.any()):
        where = _first(wrong_label)
        hint = ("labels must be -100 where a token was not chosen." if int(labels[where]) in (0, 1) or
                bool(wrong_label.float().mean() > 0.5) else
                "labels hold the *original* id (take it from input_ids before replacing tokens).")
        raise CheckFailure(f"labels[{', '.join(map(str, where))}] is {int(labels[where])}: it should be -100 "
                           f"(not chosen) or the original id {int(input_ids[where])} (chosen).", hint=hint)
    if bool(chosen.float().mean() > 0.5):
        raise CheckFailure(f"labels are set at {chosen.float().mean():.0%} of the positions.",
                           hint="labels must be -100 where a token was not chosen; only ~15% are chosen.")
    if bool((chosen & special).any()):
        where = _first(chosen & special)
        name = SPECIAL_NAMES[int(input_ids[where])]
        raise CheckFailure(f"position {list(where)} holds {name} (id {int(input_ids[where])}) but was chosen.",
                           hint="never choose special tokens or padding ([CLS], [SEP], [PAD]): leave out the ids "
                                "in `special_ids`, e.g. with torch.isin(input_ids, torch.tensor(special_ids)).")
    changed_unchosen = ~chosen & (masked != input_ids)
    if bool(changed_unchosen.any()):
        where = _first(changed_unchosen)
        raise CheckFailure(f"position {list(where)} changed from {int(input_ids[where])} to {int(masked[where])} "
                           f"but its label is -100 (not chosen).",
                           hint="every replaced token ([MASK] or random) is a chosen token: set its label too.")
    random = chosen & (masked != input_ids) & (masked != MASK)
    counts.eligible += int((~special).sum())
    counts.chosen += int(chosen.sum())
    counts.masked += int((chosen & (masked == MASK)).sum())
    counts.random += int(random.sum())
    counts.unchanged += int((chosen & (masked == input_ids)).sum())
    return masked[random]


def _expect_rate(name: str, count: int, total: int, p: float, sigmas: float, of_what: str,
                 hint: Callable[[float, float], str | None]) -> None:
    """Fail unless count/total is within ``sigmas`` binomial standard deviations of ``p``."""
    if total == 0:
        raise CheckFailure(f"no token was chosen (0 {of_what}).", hint="choose each ordinary token with probability "
                           "mlm_probability and set its label.")
    rate, tolerance = count / total, sigmas * math.sqrt(p * (1 - p) / total)
    if abs(rate - p) > tolerance:
        raise CheckFailure(f"{rate:.1%} {of_what} were {name}, expected {p:.1%} ± {tolerance:.1%} "
                           f"({sigmas:g} standard deviations for {total} tokens).", hint=hint(rate, p))


def _selection_hint(rate: float, p: float) -> str | None:
    """Known reasons for a wrong 15%."""
    if abs(rate - 0.8 * p) < 0.2 * p * 0.5:
        return ("about 80% of 15%: did you label only the [MASK]ed tokens? Every chosen token gets a label, also the "
                "10% random and the 10% unchanged ones.")
    return "choose each ordinary token independently with probability mlm_probability (torch.rand(...) < p)."


def _expect_split(counts: _Counts, sigmas: float) -> None:
    """Fail unless the chosen tokens split 80 / 10 / 10; list all three rates and name the known mistake."""
    shares = [("[MASK]", counts.masked, 0.8 + 0.1 / VOCAB), ("random id", counts.random, 0.1 * (1 - 2 / VOCAB)),
              ("unchanged", counts.unchanged, 0.1 + 0.1 / VOCAB)]  # a random id can equal the original or [MASK]
    lines, wrong = [], False
    for name, count, p in shares:
        rate, tolerance = count / counts.chosen, sigmas * math.sqrt(p * (1 - p) / counts.chosen)
        wrong |= abs(rate - p) > tolerance
        lines.append(f"{name:<10} {rate:6.1%}   expected {p:.1%} ± {tolerance:.1%}")
    if not wrong:
        return
    random, unchanged = counts.random / counts.chosen, counts.unchanged / counts.chosen
    if random < 0.01 and unchanged < 0.01:
        hint = "only [MASK]: 10% of the chosen tokens become a random id and 10% stay unchanged (still labelled)."
    elif 0.01 <= random < 0.04 and unchanged > 0.14:
        hint = "the random 10% is of *all* chosen tokens, i.e. half of the 20% that were not [MASK]ed."
    elif random < 0.01:
        hint = "forgot the 10% random: 10% of the chosen tokens become a random id from torch.randint(vocab_size, ...)."
    elif unchanged < 0.01:
        hint = "forgot the 10% unchanged: 10% of the chosen tokens keep their id (and still get a label)."
    else:
        hint = "split the chosen tokens 80 / 10 / 10 with one uniform draw per position."
    raise CheckFailure(f"the chosen tokens are not split 80/10/10 ({sigmas:g} standard deviations for "
                       f"{counts.chosen} chosen tokens).", details=lines, hint=hint)


def _expect_reproducible(fn: Callable, seed: int) -> None:
    """The same seeded generator gives the same answer, whatever the global random state."""
    input_ids = make_batch(torch.Generator().manual_seed(seed))
    answers = []
    for global_seed in (1, 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            answers.append(_call(fn, input_ids, 0.15, torch.Generator().manual_seed(seed + 7)))
    if not all(torch.equal(a, b) for a, b in zip(*answers)):
        raise CheckFailure("two calls with identically seeded generators gave different answers.",
                           hint="pass `generator=generator` to every torch.rand / torch.randint / torch.bernoulli "
                                "call.")


def _first(flags: torch.Tensor) -> tuple[int, ...]:
    """The first True position."""
    return tuple(int(i) for i in flags.nonzero()[0])
