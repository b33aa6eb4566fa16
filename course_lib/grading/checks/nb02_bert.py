"""Check for the masked-LM exercise (Devlin et al. 2019, Sec. 3.1 and Appendix A.1).

The student's ``fn(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None)`` returns
``(masked_input_ids, labels)`` as :func:`course_lib.text.masking.mask_tokens` does. Every call draws a fresh
vocabulary (size, [MASK] id, special ids: never BERT's 30,522 / 103 / 0, 101, 102, so hard-coded ids fail) and fresh
batches. The check is statistical: it accepts a rate when it lies within ``sigmas`` binomial standard deviations of
the expected one, so a correct answer fails with probability below about 1e-5 per rate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_lib.grading.runtime.compare import expect_tensor
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError
from course_lib.grading.runtime.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student

BERT_IDS = {0, 101, 102, 103}  # bert-base-uncased's [PAD], [CLS], [SEP], [MASK]: never drawn
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Vocabulary:
    """A drawn vocabulary: its size, the [MASK] id and the special ids ([PAD], [CLS], [SEP])."""

    size: int
    mask: int
    pad: int
    cls: int
    sep: int

    @property
    def specials(self) -> list[int]:
        return [self.pad, self.cls, self.sep]

    def name(self, token_id: int) -> str:
        return {self.pad: "[PAD]", self.cls: "[CLS]", self.sep: "[SEP]"}.get(token_id, str(token_id))

    @classmethod
    def draw(cls, draw: random.Random) -> Vocabulary:
        size = draw.randint(1000, 20000)  # below BERT's 30,522: a hard-coded vocabulary size draws ids out of range
        mask, pad, cls_id, sep = draw.sample(sorted(set(range(size)) - BERT_IDS), 4)
        return cls(size, mask, pad, cls_id, sep)


def make_batch(vocab: Vocabulary, generator: torch.Generator, rows: int = 64, tokens: int = 128) -> torch.Tensor:
    """BERT-like ids ``[rows, tokens]``: ``[CLS] A [SEP] (B [SEP]) [PAD]...``; ordinary ids are neither special nor [MASK]."""
    ordinary = torch.tensor(sorted(set(range(vocab.size)) - set(vocab.specials) - {vocab.mask}))
    input_ids = ordinary[torch.randint(len(ordinary), (rows, tokens), generator=generator)]  # [rows, tokens]
    for row in range(rows):
        length = int(torch.randint(16, tokens + 1, (1,), generator=generator))
        input_ids[row, 0], input_ids[row, length - 1], input_ids[row, length:] = vocab.cls, vocab.sep, vocab.pad
        if row % 2:  # a sentence pair: one more [SEP] in the middle
            input_ids[row, length // 2] = vocab.sep
    return input_ids


@dataclass
class _Counts:
    """Running totals over the calls: ordinary tokens, chosen ones (and how many were expected), what they became."""

    eligible: int = 0
    chosen: int = 0
    expected: float = 0.0
    variance: float = 0.0
    masked: int = 0
    random: int = 0
    unchanged: int = 0


@register("mlm_masking", title="Masked LM: choose 15%, then 80/10/10")
def mlm_masking(fn: Callable, *, seed: int | None = None, calls: int = 6, sigmas: float = 5.0) -> str:
    """Grade ``fn`` on ``calls`` drawn batches: output types, labels, special tokens, the chosen rate and 80/10/10."""
    if calls < 1 or sigmas <= 0:
        raise CheckUsageError(f"need calls >= 1 and sigmas > 0, got calls={calls}, sigmas={sigmas}")
    draw = random.Random(seed)
    vocab = Vocabulary.draw(draw)
    counts, random_ids = _Counts(), []
    for _ in range(calls):
        generator = torch.Generator().manual_seed(draw.randrange(2**31))
        input_ids, p = make_batch(vocab, generator), round(draw.uniform(0.1, 0.2), 3)
        masked, labels = _call(fn, vocab, input_ids, p, generator)
        random_ids.append(_grade_one(vocab, input_ids, masked, labels, counts, p))

    _expect_uses_generator(fn, vocab, draw.randrange(2**31))  # else the rates below count one draw many times
    _expect_chosen(counts, sigmas, "of the ordinary tokens", _selection_hint)
    _expect_not_constant(vocab, torch.cat(random_ids), counts)
    _expect_split(counts, vocab, sigmas)
    drawn = torch.cat(random_ids)
    if drawn.numel() >= 20 and drawn.unique().numel() < drawn.numel() // 2:
        raise CheckFailure(f"the random replacements use only {drawn.unique().numel()} different ids "
                           f"in {drawn.numel()} replacements.",
                           hint="draw one random id per position: torch.randint(vocab_size, input_ids.shape, ...).")

    # The mlm_probability argument is used, not a hard-coded 0.15.
    other, generator = _Counts(), torch.Generator().manual_seed(draw.randrange(2**31))
    high = round(draw.uniform(0.3, 0.45), 3)
    for _ in range(2):
        input_ids = make_batch(vocab, generator)
        _grade_one(vocab, input_ids, *_call(fn, vocab, input_ids, high, generator), other, high)
    _expect_chosen(other, sigmas, f"of the ordinary tokens (with mlm_probability={high})",
                   lambda rate, p: "use the `mlm_probability` argument, not a fixed 0.15.")
    _expect_reproducible(fn, vocab, draw.randrange(2**31))
    return (f"chose {counts.chosen / counts.eligible:.1%} of {counts.eligible} ordinary tokens (expected "
            f"{counts.expected / counts.eligible:.1%}); of those {counts.masked / counts.chosen:.1%} [MASK], "
            f"{counts.random / counts.chosen:.1%} random, {counts.unchanged / counts.chosen:.1%} unchanged; "
            f"special tokens never chosen (vocabulary of {vocab.size}, [MASK] = {vocab.mask}).")


def _call(fn: Callable, vocab: Vocabulary, input_ids: torch.Tensor, p: float,
          generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Call the student's function; check it returns two long tensors shaped like ``input_ids``."""
    answer = call_student(fn, input_ids, mask_token_id=vocab.mask, vocab_size=vocab.size,
                          special_ids=vocab.specials, mlm_probability=p, generator=generator)
    answer = expect_sequence(answer, "your answer", "two tensors", hint="end with `return masked_input_ids, labels`.")
    if len(answer) != 2:
        raise CheckFailure(f"expected a pair (masked_input_ids, labels), got {len(answer)} items.",
                           hint="end with `return masked_input_ids, labels`.")
    masked = expect_exact_tensor(answer[0], "masked_input_ids")
    labels = expect_exact_tensor(answer[1], "labels")
    if (masked.shape == labels.shape == input_ids.shape and not masked.is_floating_point()
            and float((masked == IGNORE_INDEX).float().mean()) > 0.5 and not bool((labels == IGNORE_INDEX).any())):
        raise CheckFailure("the first tensor is mostly -100 and the second has none: the pair came back in swapped "
                           "order.", hint="return `masked_input_ids, labels` (the inputs first).")
    masked = expect_tensor(masked, "masked_input_ids", shape=tuple(input_ids.shape), dtype=input_ids.dtype)
    labels = expect_tensor(labels, "labels", shape=tuple(input_ids.shape), dtype=torch.long)
    out_of_range = (masked < 0) | (masked >= vocab.size)
    if bool(out_of_range.any()):
        where = _first(out_of_range)
        raise CheckFailure(f"masked_input_ids holds id {int(masked[where])} at {list(where)}, outside "
                           f"[0, vocab_size) = [0, {vocab.size}).",
                           hint="random ids come from torch.randint(vocab_size, ...), with the `vocab_size` argument "
                                "(this call's vocabulary is not BERT's).")
    return masked, labels


def _grade_one(vocab: Vocabulary, input_ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor,
               counts: _Counts, p: float) -> torch.Tensor:
    """Exact rules for one batch (labels, special tokens, untouched positions); add to ``counts``; return replacements."""
    special = torch.isin(input_ids, torch.tensor(vocab.specials))  # [rows, tokens]
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
        token = int(input_ids[where])
        raise CheckFailure(f"position {list(where)} holds {vocab.name(token)} (id {token}, one of special_ids="
                           f"{vocab.specials}) but was chosen.",
                           hint="never choose special tokens or padding: leave out the ids in the `special_ids` "
                                "argument (here not BERT's 0/101/102), e.g. with "
                                "torch.isin(input_ids, torch.tensor(special_ids)).")
    changed_unchosen = ~chosen & (masked != input_ids)
    if bool(changed_unchosen.any()):
        where = _first(changed_unchosen)
        raise CheckFailure(f"position {list(where)} changed from {int(input_ids[where])} to {int(masked[where])} "
                           f"but its label is -100 (not chosen).",
                           hint="every replaced token ([MASK] or random) is a chosen token: set its label too.")
    replaced = chosen & (masked != input_ids) & (masked != vocab.mask)
    eligible = int((~special).sum())
    counts.eligible += eligible
    counts.expected += p * eligible
    counts.variance += p * (1 - p) * eligible
    counts.chosen += int(chosen.sum())
    counts.masked += int((chosen & (masked == vocab.mask)).sum())
    counts.random += int(replaced.sum())
    counts.unchanged += int((chosen & (masked == input_ids)).sum())
    return masked[replaced]


def _expect_chosen(counts: _Counts, sigmas: float, of_what: str, hint: Callable[[float, float], str | None]) -> None:
    """Fail unless the number chosen is within ``sigmas`` standard deviations of the sum of p * eligible."""
    if counts.chosen == 0:
        raise CheckFailure(f"no token was chosen (0 {of_what}).", hint="choose each ordinary token with probability "
                           "mlm_probability and set its label.")
    rate, p = counts.chosen / counts.eligible, counts.expected / counts.eligible
    tolerance = sigmas * math.sqrt(counts.variance) / counts.eligible
    if abs(rate - p) > tolerance:
        raise CheckFailure(f"{rate:.1%} {of_what} were chosen, expected {p:.1%} ± {tolerance:.1%} "
                           f"({sigmas:g} standard deviations for {counts.eligible} tokens).", hint=hint(rate, p))


def _selection_hint(rate: float, p: float) -> str | None:
    """Known reasons for a wrong rate of chosen tokens."""
    if abs(rate - 0.8 * p) < 0.2 * p * 0.5:
        return ("about 80% of mlm_probability: did you label only the [MASK]ed tokens? Every chosen token gets a "
                "label, also the 10% random and the 10% unchanged ones.")
    if abs(rate - 0.15) < 0.01:
        return "about 15% although this call passed another mlm_probability: use the argument, not a fixed 0.15."
    return "choose each ordinary token independently with probability mlm_probability (torch.rand(...) < p)."


def _expect_not_constant(vocab: Vocabulary, replacements: torch.Tensor, counts: _Counts) -> None:
    """Most chosen tokens replaced by one id that is not ``mask_token_id``: a hard-coded [MASK]."""
    if counts.masked > 0.5 * counts.chosen or replacements.numel() < 20:
        return
    values, frequencies = replacements.unique(return_counts=True)
    value, count = int(values[frequencies.argmax()]), int(frequencies.max())
    if count > 0.5 * counts.chosen:
        raise CheckFailure(f"{count / counts.chosen:.0%} of the chosen tokens became id {value}, but this call's "
                           f"mask_token_id is {vocab.mask}.",
                           hint="use the `mask_token_id` argument: 103 is [MASK] only in BERT's own vocabulary.")


def _expect_split(counts: _Counts, vocab: Vocabulary, sigmas: float) -> None:
    """Fail unless the chosen tokens split 80 / 10 / 10; list all three rates and name the known mistake."""
    v = vocab.size  # a random id can equal the original or [MASK]
    shares = [("[MASK]", counts.masked, 0.8 + 0.1 / v), ("random id", counts.random, 0.1 * (1 - 2 / v)),
              ("unchanged", counts.unchanged, 0.1 + 0.1 / v)]
    lines, wrong = [], False
    for name, count, p in shares:
        rate, tolerance = count / counts.chosen, sigmas * math.sqrt(p * (1 - p) / counts.chosen)
        wrong |= abs(rate - p) > tolerance
        lines.append(f"{name:<10} {rate:6.1%}   expected {p:.1%} ± {tolerance:.1%}")
    if not wrong:
        return
    random_share, unchanged = counts.random / counts.chosen, counts.unchanged / counts.chosen
    if random_share < 0.01 and unchanged < 0.01:
        hint = "only [MASK]: 10% of the chosen tokens become a random id and 10% stay unchanged (still labelled)."
    elif 0.01 <= random_share < 0.04 and unchanged > 0.14:
        hint = "the random 10% is of *all* chosen tokens, i.e. half of the 20% that were not [MASK]ed."
    elif random_share < 0.01:
        hint = "forgot the 10% random: 10% of the chosen tokens become a random id from torch.randint(vocab_size, ...)."
    elif unchanged < 0.01:
        hint = "forgot the 10% unchanged: 10% of the chosen tokens keep their id (and still get a label)."
    else:
        hint = "split the chosen tokens 80 / 10 / 10 with one uniform draw per position."
    raise CheckFailure(f"the chosen tokens are not split 80/10/10 ({sigmas:g} standard deviations for "
                       f"{counts.chosen} chosen tokens).", details=lines, hint=hint)


def _expect_uses_generator(fn: Callable, vocab: Vocabulary, seed: int) -> None:
    """Differently seeded generators, under the same global random state, give different answers."""
    input_ids = make_batch(vocab, torch.Generator().manual_seed(seed))
    answers = []
    for generator_seed in (seed + 1, seed + 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            answers.append(_call(fn, vocab, input_ids, 0.15, torch.Generator().manual_seed(generator_seed)))
    if all(torch.equal(a, b) for a, b in zip(*answers)):
        raise CheckFailure("two calls with differently seeded generators gave the same answer: your function ignores "
                           "its `generator` argument (or resets the global seed), so every call draws the same "
                           "positions and ids.",
                           hint="draw every random number from the generator you are given: pass "
                                "`generator=generator` to each torch.rand / torch.randint / torch.bernoulli call, and "
                                "do not call torch.manual_seed inside the function.")


def _expect_reproducible(fn: Callable, vocab: Vocabulary, seed: int) -> None:
    """The same seeded generator gives the same answer, whatever the global random state."""
    input_ids = make_batch(vocab, torch.Generator().manual_seed(seed))
    answers = []
    for global_seed in (1, 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            answers.append(_call(fn, vocab, input_ids, 0.15, torch.Generator().manual_seed(seed + 7)))
    if not all(torch.equal(a, b) for a, b in zip(*answers)):
        raise CheckFailure("two calls with identically seeded generators gave different answers.",
                           hint="pass `generator=generator` to every torch.rand / torch.randint / torch.bernoulli "
                                "call.")


def _first(flags: torch.Tensor) -> tuple[int, ...]:
    """The first True position."""
    return tuple(int(i) for i in flags.nonzero()[0])
