"""Checks for notebook 04 (Transformer-XL), its mechanism: the relative shift and the memory update.

- ``relative_shift``: ``fn(scores) -> shifted`` for ``scores [batch, heads, qlen, klen]`` whose column c holds the
  score for distance klen-1-c (``course_lib.blocks.relative_attention``). Query i, which has klen-qlen memory slots
  before it, needs distance (klen-qlen) + i - j at key j. Graded on every key a query may attend (j <= klen-qlen+i):
  the authors' trick leaves junk to the right of that, which the causal mask hides.
- ``memory_update``: ``fn(hidden_states, mems, mem_len) -> new_mems``: for every layer, concatenate the old memory
  and the segment's hidden states along the tokens, keep the LAST ``mem_len`` positions, cut them from the graph
  (stop-gradient, Dai et al. 2019, Sec. 3.2). ``mems`` is None at the first segment.

The notebook's final exercise, evaluation with memory, is in ``nb04_xl_evaluation``. Every call draws fresh sizes
and values (``seed=None``); a wrong answer is compared with the known mistakes to name the one it matches.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor, expect_sequence
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student, run_student

# --- the relative shift ---------------------------------------------------------------------------------------------


def _gather_shift(scores: torch.Tensor, offset: int = 0, direction: int = 1) -> torch.Tensor:
    """An explicit gather: row i reads column j + (qlen-1-i) (+ offset); ``direction=-1`` moves rows the wrong way."""
    query_len, key_len = scores.shape[-2:]
    i, j = torch.arange(query_len)[:, None], torch.arange(key_len)[None, :]
    move = (query_len - 1 - i) if direction == 1 else i
    index = (j + move + offset).clamp(0, key_len - 1).expand_as(scores)
    return scores.gather(-1, index)


def _allowed(query_len: int, key_len: int) -> torch.Tensor:
    """``[qlen, klen]`` True where query i may attend key j (every memory slot and the segment up to itself)."""
    i, j = torch.arange(query_len)[:, None], torch.arange(key_len)[None, :]
    return j <= i + (key_len - query_len)


_SHIFT_MISTAKES = [
    ("no shift at all", lambda s: s,
     "row i must move left by qlen-1-i columns: the last query keeps its row, the first moves the most."),
    ("off by one: one column too far", lambda s: _gather_shift(s, offset=1),
     "row i moves left by qlen-1-i, not qlen-i: on the diagonal (key = query) the distance must be 0, the last "
     "column of the unshifted row."),
    ("off by one: one column short", lambda s: _gather_shift(s, offset=-1),
     "row i moves left by qlen-1-i, not qlen-2-i: on the diagonal (key = query) the distance must be 0."),
    ("rows moved the wrong way", lambda s: _gather_shift(s, direction=-1),
     "the LAST query (i = qlen-1) keeps its row as it is; the first query (i = 0) moves left by qlen-1 columns."),
]


def _draw_shift_case(draw: random.Random, generator: torch.Generator, with_memory: bool) -> torch.Tensor:
    batch, heads, query_len = draw.randint(1, 3), draw.randint(1, 4), draw.randint(3, 7)
    key_len = query_len + (draw.randint(2, 9) if with_memory else 0)
    return torch.randn(batch, heads, query_len, key_len, generator=generator)


@register("relative_shift", title="Transformer-XL: the relative shift")
def relative_shift(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(scores) -> shifted`` on a case without memory (qlen = klen) and two with memory (klen > qlen)."""
    from course_lib.blocks.relative_attention import relative_shift as reference

    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for label, with_memory in (("no memory, klen = qlen", False), ("with memory, klen > qlen", True),
                               ("with memory, other sizes", True)):
        scores = _draw_shift_case(draw, generator, with_memory)
        answer = call_student(fn, scores, error_hints=[
            (r"(?i)(size|shape|view|invalid)", "read qlen and klen from scores.shape (they change at every call): "
                                           "never type sizes such as 4 or 9 into the function.")])
        shape = "x".join(str(n) for n in scores.shape)
        got = expect_exact_tensor(answer, "shifted", hint="return the shifted scores as a tensor.")
        if tuple(got.shape) != tuple(scores.shape) or got.dtype != scores.dtype:
            raise CheckFailure(f"({label}) `shifted` should be {scores.dtype} of shape {list(scores.shape)} like "
                               f"`scores`, got {got.dtype} of shape {list(got.shape)}.",
                               hint="the shift moves entries within each row; it keeps the shape.")
        allowed = _allowed(*scores.shape[-2:])
        got = got.detach()
        expected = torch.where(allowed, reference(scores), torch.zeros(()))
        graded = torch.where(allowed, got, torch.zeros(()))
        if is_close(graded, expected, atol=0, rtol=0):
            continue
        query_len, key_len = scores.shape[-2:]
        details = [f"scores of shape [{shape}]: qlen={query_len}, klen={key_len}, so {key_len - query_len} memory "
                   "slots before the first query.", *_distance_rows(got, scores, allowed)]
        for name, mistake, hint in _SHIFT_MISTAKES:
            if is_close(graded, torch.where(allowed, mistake(scores), torch.zeros(())), atol=0, rtol=0):
                raise CheckFailure(f"({label}) this looks like '{name}'.", details=details, hint=hint)
        raise CheckFailure(f"({label}) wrong shifted scores.", details=details,
                           hint="shifted[..., i, j] = scores[..., i, j + qlen - 1 - i] for every key j <= klen - qlen "
                                "+ i (what lies right of that is masked and not graded).")
    return "every query reads the score of its true distance (klen-qlen) + i - j, with and without memory."


def _distance_rows(got: torch.Tensor, scores: torch.Tensor, allowed: torch.Tensor) -> list[str]:
    """Which distance each graded entry of example 0, head 0 came from, as the student reads it (-: not graded)."""
    query_len, key_len = scores.shape[-2:]
    rows = [f"The distance each of your entries [0, 0, i, j] came from (expected: {key_len - query_len} + i - j; "
            "-: not graded, ?: not found in the row):"]
    for i in range(query_len):
        cells = []
        for j in range(key_len):
            if not allowed[i, j]:
                cells.append("  -")
                continue
            hits = (scores[0, 0, i] == got[0, 0, i, j]).nonzero().flatten()
            cells.append(f"{key_len - 1 - int(hits[0]):>3}" if len(hits) else "  ?")
        rows.append(f"  query {i}: " + " ".join(cells))
    return rows


# --- the memory update ----------------------------------------------------------------------------------------------


def _memory_reference(hidden_states: list[torch.Tensor], mems: list[torch.Tensor] | None, mem_len: int,
                      mistake: str | None = None) -> list[torch.Tensor]:
    """The new memory (values only, detached), or one of the known mistakes."""
    new = []
    for index, hidden in enumerate(hidden_states):
        old = None if mems is None else mems[index]
        if mistake == "new states only" or old is None:
            extended = hidden
        elif mistake == "old memory only":
            extended = old
        elif mistake == "segment before the memory":
            extended = torch.cat([hidden, old], dim=1)
        else:
            extended = torch.cat([old, hidden], dim=1)
        new.append((extended[:, :mem_len] if mistake == "first mem_len kept" else extended[:, -mem_len:]).detach())
    return new


_MEMORY_MISTAKES = [
    ("first mem_len kept", "keep the LAST mem_len positions, `[:, -mem_len:]`: the memory slides forward, the oldest "
                           "states leave it."),
    ("new states only", "concatenate the old memory and the new hidden states along the tokens, "
                        "`torch.cat([mems[i], hidden_states[i]], dim=1)`, then cut: with mem_len > qlen the memory "
                        "keeps part of the older segment too."),
    ("old memory only", "the new memory must contain the segment just read: concatenate it after the old memory."),
    ("segment before the memory", "the old memory comes first (it is older): `torch.cat([mems[i], hidden_states[i]], "
                                  "dim=1)`, in time order."),
]


def _draw_memory_case(draw: random.Random, generator: torch.Generator, case: str):
    """Hidden states that are part of a graph (leaves with requires_grad), the old memory, and mem_len."""
    n_states, batch, dim = draw.randint(2, 4), draw.randint(1, 3), draw.choice([4, 6, 8])
    query_len = draw.randint(3, 6)
    if case == "first segment":
        memory_len, mem_len = None, query_len + draw.randint(1, 4)
    elif case == "memory filling up":  # old + new still fit: nothing is dropped yet
        mem_len = query_len + draw.randint(3, 6)
        memory_len = draw.randint(1, mem_len - query_len)
    elif case == "memory full":
        mem_len = draw.randint(query_len + 1, query_len + 5)
        memory_len = mem_len
    else:  # "mem_len < qlen": only the end of the segment stays
        mem_len = draw.randint(1, query_len - 1)
        memory_len = mem_len
    hidden_states = [torch.randn(batch, query_len, dim, generator=generator).requires_grad_(True)
                     for _ in range(n_states)]
    mems = None if memory_len is None else [torch.randn(batch, memory_len, dim, generator=generator)
                                            for _ in range(n_states)]
    return hidden_states, mems, mem_len


@register("memory_update", title="Transformer-XL: the memory update (concatenate, keep the last mem_len, detach)")
def memory_update(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(hidden_states, mems, mem_len) -> new_mems`` on a first segment, a filling and a full memory."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for case in ("first segment", "memory filling up", "memory full", "mem_len < qlen"):
        hidden_states, mems, mem_len = _draw_memory_case(draw, generator, case)
        call = run_student(fn, hidden_states, mems, mem_len, error_hints=[
            (r"NoneType", "at the first segment `mems` is None: there is no old memory yet, the new memory is the "
                          "last mem_len hidden states alone."),
            (r"leaf Variable|in-place", "do not change the hidden states in place: build new tensors "
                                        "(torch.cat, slicing, .detach())."),
            (r"(?i)(size|shape|dimension)", "concatenate along the tokens (dim=1 of [batch, tokens, dim]) and read "
                                        "every size from the tensors or from mem_len; never type sizes in.")])
        if not all(hidden.requires_grad for hidden in call.args[0]):
            raise CheckFailure(f"({case}) your function detached the hidden states themselves, in place (detach_ or "
                               "requires_grad_(False)): the current segment's loss still needs their graph.",
                               hint="leave hidden_states as they are; `.detach()` returns a new, detached tensor.")
        _grade_memory(call.answer, hidden_states, mems, mem_len, case, handed=call.args[0])
    return ("for every layer: [old memory; segment] along the tokens, the last mem_len positions kept, cut from the "
            "graph (no gradient can flow into an earlier segment).")


def _grade_memory(answer: object, hidden_states: list[torch.Tensor], mems: list[torch.Tensor] | None, mem_len: int,
                  case: str, handed: list[torch.Tensor]) -> None:
    """Structure, shapes, values (naming the known mistakes), then the stop-gradient."""
    sizes = (f"{len(hidden_states)} hidden states of shape {list(hidden_states[0].shape)}, mems "
             f"{'None' if mems is None else f'of shape {list(mems[0].shape)}'}, mem_len={mem_len}")
    if isinstance(answer, torch.Tensor):
        raise CheckFailure(f"({case}) expected a list of {len(hidden_states)} tensors (one per layer), got one "
                           f"tensor of shape {list(answer.shape)}.", details=[sizes],
                           hint="return a list with one new memory tensor per hidden state, e.g. `return new_mems`.")
    answer = expect_sequence(answer, "new_mems", "tensors, one per layer", hint="return a list of tensors.")
    if len(answer) != len(hidden_states):
        raise CheckFailure(f"({case}) expected {len(hidden_states)} memories (one per hidden state), got "
                           f"{len(answer)}.", details=[sizes], hint="one new memory for every entry of hidden_states.")
    expected = _memory_reference(hidden_states, mems, mem_len)
    got = [expect_exact_tensor(tensor, f"new_mems[{index}]") for index, tensor in enumerate(answer)]
    for index, (tensor, reference) in enumerate(zip(got, expected)):
        if tuple(tensor.shape) != tuple(reference.shape):
            for name, hint in _MEMORY_MISTAKES:
                if tuple(_memory_reference(hidden_states, mems, mem_len, name)[index].shape) == tuple(tensor.shape) \
                        and _same_values(got, _memory_reference(hidden_states, mems, mem_len, name)):
                    raise CheckFailure(f"({case}) this looks like '{name}'.", details=[sizes], hint=hint)
            raise CheckFailure(f"({case}) new_mems[{index}] should have shape {list(reference.shape)}, got "
                               f"{list(tensor.shape)}.", details=[sizes],
                               hint="[batch, min(old + new tokens, mem_len), dim]: concatenate along dim=1, then "
                                    "keep the last mem_len positions.")
    if not _same_values(got, expected):
        for name, hint in _MEMORY_MISTAKES:
            if _same_values(got, _memory_reference(hidden_states, mems, mem_len, name)):
                raise CheckFailure(f"({case}) this looks like '{name}'.", details=[sizes], hint=hint)
        index = next(i for i, (a, b) in enumerate(zip(got, expected)) if not torch.equal(a.detach(), b))
        raise CheckFailure(f"({case}) new_mems[{index}] has the right shape but wrong values.",
                           details=[sizes, *describe_difference(got[index].detach(), expected[index],
                                                                f"new_mems[{index}]")],
                           hint="new_mems[i] = torch.cat([mems[i], hidden_states[i]], dim=1)[:, -mem_len:].detach()")
    attached = _reaches_hidden_states(got, handed)
    if attached is not None:
        raise CheckFailure(f"({case}) the values are right, but new_mems[{attached}] is still part of the graph: "
                           "forgot the stop-gradient.",
                           details=[sizes, "The next segment's loss would flow back into this segment's computation "
                                           "(and keep its whole graph in memory)."],
                           hint="cut the memory from the graph: `.detach()` each new memory (or build it under "
                                "`torch.no_grad()`): SG(.) in Dai et al. 2019, Sec. 3.2.")


def _reaches_hidden_states(got: list[torch.Tensor], handed: list[torch.Tensor]) -> int | None:
    """The first new memory through which a gradient reaches the hidden states the student was handed, else None."""
    for index, tensor in enumerate(got):
        if not tensor.requires_grad:
            continue
        if any(tensor is hidden for hidden in handed):
            return index  # the hidden state itself, handed back
        if tensor.grad_fn is None:
            continue  # a view made under torch.no_grad(): a leaf of its own, no path back
        grads = torch.autograd.grad(tensor.sum(), handed, allow_unused=True, retain_graph=True)
        if any(grad is not None for grad in grads):
            return index
    return None


def _same_values(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    return len(got) == len(expected) and all(
        tuple(a.shape) == tuple(b.shape) and torch.equal(a.detach(), b) for a, b in zip(got, expected))
