"""Checks for notebook 04 (Transformer-XL), its final exercise: evaluation with memory.

- ``xl_evaluation``: ``fn(model, ids, segment_len) -> losses``: read a held-out text segment by segment with the
  memory carried along, return the per-token next-token cross-entropy (nats) ``[len(ids) - 1]``. Graded on a stretch
  of the held-out plays drawn at every call, against ``course_lib``'s own segment-by-segment evaluation.

Every call draws a fresh stretch (``seed=None``); a wrong answer is compared with the known mistakes to name the one
it matches. The loop must be the student's: the model handed over has its ``forward_in_segments`` switched off, and
while the student's function runs a hook on every module's forward looks up the call stack for course_lib's own
segment-by-segment readers (``TransformerXLLMHeadModel.forward_in_segments``, reached through the parent class or on
any other model, and this check's ``_reference_losses``): calling one fails, naming it.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from functools import lru_cache

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import AsIs, call_student
from course_lib.training.losses import next_token_loss


@lru_cache(maxsize=1)
def _held_out_ids() -> torch.Tensor:
    """The 4 held-out plays, encoded with the course BPE (the checkpoint never trained on them)."""
    from course_lib.pretraining.checkpoints import load_checkpoint
    from course_lib.text.batching import encode_corpus
    from course_lib.text.corpus import load_shakespeare

    _, tokenizer = load_checkpoint("transformer-xl")
    return encode_corpus(load_shakespeare("valid"), tokenizer)


@lru_cache(maxsize=1)
def _checkpoint_state() -> tuple:
    from course_lib.pretraining.checkpoints import load_checkpoint

    model, _ = load_checkpoint("transformer-xl")
    return model.config, {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


_SHORTCUT = "forward_in_segments is switched off in this exercise: write the loop over the segments yourself."


def _exercise_model(train: bool):
    """A fresh copy of the course checkpoint; its ``forward_in_segments`` (the answer) is switched off."""
    from course_lib.models.transformer_xl import TransformerXLLMHeadModel

    class TransformerXLForTheExercise(TransformerXLLMHeadModel):
        def forward_in_segments(self, *args, **kwargs):
            raise RuntimeError(_SHORTCUT)

    config, state = _checkpoint_state()
    model = TransformerXLForTheExercise(config)
    model.load_state_dict(state)
    return model.train(train)


@torch.no_grad()
def _reference_losses(model, ids: torch.Tensor, segment_len: int, memory: bool = True,
                      shift: int = 1) -> torch.Tensor:
    """Per-token losses of ``ids`` read in segments (memory carried or not); ``shift=0``: the known off-by-one."""
    inputs = ids[:-1] if shift else ids
    targets = ids[1:] if shift else ids
    losses, mems = [], None
    for start in range(0, len(inputs), segment_len):
        output = model(inputs[None, start:start + segment_len], mems=mems if memory else None)
        mems = output.mems
        losses.append(next_token_loss(output.logits, targets[None, start:start + segment_len], reduction="none"))
    return torch.cat(losses)


class _ShortcutWatch:
    """While the student's function runs: a hook on every module's forward that looks up the call stack for one of
    course_lib's own segment-by-segment readers; the first one found is kept in ``found``."""

    def __init__(self) -> None:
        from course_lib.models.transformer_xl import TransformerXLLMHeadModel

        self.readers = {TransformerXLLMHeadModel.forward_in_segments.__code__:
                        "`TransformerXLLMHeadModel.forward_in_segments` (course_lib's own loop over the segments)",
                        getattr(_reference_losses, "__wrapped__", _reference_losses).__code__:
                        "the check's own `_reference_losses` (the answer it compares with)"}
        self.found: str | None = None
        self._handle = None

    def _look(self, module, args) -> None:
        frame = sys._getframe(1) if self.found is None else None
        while frame is not None and self.found is None:
            self.found = self.readers.get(frame.f_code)
            frame = frame.f_back

    def __enter__(self) -> _ShortcutWatch:
        self._handle = register_module_forward_pre_hook(self._look)
        return self

    def __exit__(self, *exc) -> None:
        hooks = self._handle.hooks_dict_ref()
        if self.found is None and (hooks is None or self._handle.id not in hooks):
            self.found = "code that removed the check's hook on every module's forward (it looks for these calls)"
        self._handle.remove()


def _draw_stretch(draw: random.Random) -> tuple[torch.Tensor, int]:
    """A stretch of the held-out plays (not a whole number of segments) and a segment length."""
    ids = _held_out_ids()
    segment_len = draw.choice([24, 32, 40, 48])
    length = draw.randint(8, 14) * segment_len + draw.randint(3, segment_len - 3) + 1
    start = draw.randrange(len(ids) - length)
    return ids[start:start + length].clone(), segment_len


@register("xl_evaluation", title="Transformer-XL: evaluate a held-out text segment by segment, with memory",
          time_limit=60.0, timeout_hint="the reference reads the same text in well under a second: read each segment "
                                        "once (no re-reading of earlier ones) and evaluate under torch.no_grad().")
def xl_evaluation(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(model, ids, segment_len) -> losses [len(ids) - 1]`` on a freshly drawn held-out stretch."""
    draw = random.Random(seed)
    ids, segment_len = _draw_stretch(draw)
    reference_model = _exercise_model(train=False)
    start = time.perf_counter()
    expected = _reference_losses(reference_model, ids, segment_len)
    reference_seconds = time.perf_counter() - start
    handed = _exercise_model(train=True)  # as a model comes out of training: dropout on
    started = time.perf_counter()
    with _ShortcutWatch() as watch:
        answer = call_student(fn, AsIs(handed), ids, segment_len, error_hints=[
            (r"switched off", "call the model on one segment at a time, `model(segment, mems=mems)`, and carry "
                              "`output.mems` to the next segment."),
            (r"(?i)(size|shape|dimension)", "the model takes [batch, tokens] ids (`ids[None, start:end]`); the labels "
                                            "of a segment are the ids one position later.")])
    seconds = time.perf_counter() - started
    if watch.found is not None:
        raise CheckFailure(f"your function called {watch.found}: this exercise grades the loop you write.",
                           hint="call the model on one segment at a time, `output = model(ids[None, s:e], mems=mems)`, "
                                "carry `mems = output.mems`, and compute the losses yourself.")
    where = (f"{len(ids)} held-out tokens ({len(ids) - 1} predictions), segment_len={segment_len}, "
             f"mem_len={handed.config.mem_len}")
    if type(answer) in (int, float) or (type(answer) is torch.Tensor and answer.dim() == 0):
        raise CheckFailure("expected one loss per predicted token, got a single number.", details=[where],
                           hint=f"return the per-token losses, a tensor of {len(ids) - 1} values "
                                "(F.cross_entropy(..., reduction='none')); their mean is the loss, exp(mean) the "
                                "perplexity.")
    got = expect_exact_tensor(answer, "losses", hint="return a tensor of per-token losses.").detach().float()
    if got.dim() != 1:
        got = got.flatten() if got.dim() == 2 and got.shape[0] == 1 else got
    if tuple(got.shape) != (len(ids) - 1,):
        hint = (f"{len(ids)} ids give {len(ids) - 1} predictions: the input of a segment is ids[start:end], its "
                "labels ids[start + 1:end + 1]; the last id is only a label." if got.numel() == len(ids)
                else "cover the whole text: the last segment is shorter than segment_len; keep it."
                if got.numel() < len(ids) - 1 else "one loss per predicted token, in text order.")
        raise CheckFailure(f"`losses` should have shape [{len(ids) - 1}], got {list(got.shape)}.", details=[where],
                           hint=hint)
    summary = (f"mean loss {float(got.mean()):.4f} nats (perplexity {float(got.mean().exp()):.1f}); course_lib's "
               f"reference {float(expected.mean()):.4f} (perplexity {float(expected.mean().exp()):.1f}); "
               f"{seconds:.2f} s (reference {reference_seconds:.2f} s)")
    if is_close(got, expected, atol=1e-4, rtol=1e-4):
        return (f"{where}: per-token losses equal course_lib's evaluation with memory; {summary}.")
    details = [where, summary]
    if is_close(got, _reference_losses(reference_model, ids, segment_len, memory=False), atol=1e-4, rtol=1e-4):
        raise CheckFailure("these are the losses WITHOUT memory: every segment starts from nothing.", details=details,
                           hint="pass the previous segment's `output.mems` to the next call: "
                                "`output = model(segment, mems=mems); mems = output.mems`.")
    config_len = handed.config.segment_len
    if config_len != segment_len and is_close(
            got, _reference_losses(reference_model, ids, config_len), atol=1e-4, rtol=1e-4):
        raise CheckFailure(f"these are the losses for segments of {config_len} tokens (the model's "
                           f"config.segment_len), not {segment_len}.", details=details,
                           hint="use the segment_len argument; never type sizes in.")
    if is_close(got, expected.exp(), atol=1e-3, rtol=1e-3):
        raise CheckFailure("these are per-token perplexities (exp of the losses).", details=details,
                           hint="return the losses in nats; the perplexity is exp(losses.mean()).")
    if handed.training:
        raise CheckFailure("the model is still in training mode: dropout changes every number at random.",
                           details=details, hint="call `model.eval()` before evaluating (and evaluate under "
                                                 "`torch.no_grad()`).")
    first = min(segment_len, len(got))
    if is_close(got[:first], expected[:first], atol=1e-4, rtol=1e-4):
        bad = int((~torch.isclose(got, expected, atol=1e-4, rtol=1e-4)).nonzero()[0])
        raise CheckFailure(f"the first segment is right, but position {bad} (segment {bad // segment_len}) is not.",
                           details=[*details, *describe_difference(got, expected, "losses")],
                           hint="carry the memory from each segment to the next, in order, and read each segment "
                                "exactly once.")
    raise CheckFailure("wrong per-token losses.", details=[*details, *describe_difference(got, expected, "losses")],
                       hint="for each segment: logits = model(ids[None, s:e], mems=mems).logits, loss = "
                            "F.cross_entropy(logits[0], ids[s + 1:e + 1], reduction='none').")
