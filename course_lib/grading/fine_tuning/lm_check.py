"""Check for notebook 05's final exercise: fine-tune a pretrained LM on target text within a budget of tokens.

The student writes ``fine_tune_lm(model, batches) -> model``. The check (mirroring ``classifier_check``) builds a fresh
copy of the pretrained LM and the training batches from a task (``course_lib.grading.fine_tuning.lm_tasks``), counts the training tokens
the model reads (the budget: ``max_epochs`` passes over the training text, counted in forward passes in train mode or
with gradients on), rebuilds a model of the task's own architecture from the returned weights, and scores nats per
token on held-out messages the student's function is never handed. Training on held-out text is detected (runs of
tokens that occur only in the held-out split). The report prints the pretrained model's held-out loss before
fine-tuning next to the student's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from course_lib.grading.fine_tuning import budget
from course_lib.grading.fine_tuning.lm_tasks import LMFineTuning, get_lm_task
from course_lib.grading.fine_tuning.trained_weights import rebuilt
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError
from course_lib.grading.runtime.inputs import kind
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import AsIs, call_student

SHINGLE = 8  # a held-out text is recognised by runs of this many tokens that occur in no other split
LEAK_TOLERANCE = 32  # held-out runs a model may meet in training before the check calls it training on held-out text

_TIMEOUT_HINT = (f"the limit is calibrated on this machine just before grading: {budget.SLOWDOWN:g} x the time of the "
                 f"whole allowed training + {budget.SLACK_SECONDS:g} s. Look for an endless loop (a `while` whose "
                 "condition never changes).")


class TokenCounter(budget.TrainingCounter):
    """Counts the tokens each watched module reads in training; ``watched`` are runs of held-out tokens."""

    def __init__(self, modules: dict[str, nn.Module], watched: frozenset = frozenset()):
        def runs(ids: torch.Tensor) -> set:
            return {tuple(row[i:i + SHINGLE]) for row in ids.tolist() for i in range(len(row) - SHINGLE + 1)} & watched

        super().__init__(modules, size=lambda ids: 0 if ids.is_floating_point() else int(ids.numel()),
                         keys=runs if watched else None, embedding=modules["embedding"])
        self.shifted_labels = 0  # training calls of the LM with labels that are already the next tokens

        def note_labels(module: nn.Module, args: tuple, kwargs: dict) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            labels = kwargs.get("labels", args[2] if len(args) > 2 else None)
            if (self.active and isinstance(ids, torch.Tensor) and isinstance(labels, torch.Tensor)
                    and ids.dim() == 2 and ids.shape == labels.shape and ids.shape[1] > 1
                    and torch.equal(labels[:, :-1], ids[:, 1:])):
                self.shifted_labels += 1

        self.handles.append(modules["model"].register_forward_pre_hook(note_labels, with_kwargs=True))

    @property
    def tokens(self) -> int:
        """Tokens read in training."""
        return self.total


def counted_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The LM, its body and its token embedding: every training path reads tokens through one of them."""
    return {"model": model, "body": model.transformer, "embedding": model.transformer.token_embedding}


@lru_cache(maxsize=8)
def heldout_runs(spec: LMFineTuning) -> frozenset[tuple[int, ...]]:
    """Runs of SHINGLE tokens of the held-out text that occur nowhere in the train and valid messages."""
    def runs(ids: torch.Tensor) -> set[tuple[int, ...]]:
        ids = ids.tolist()
        return {tuple(ids[i:i + SHINGLE]) for i in range(len(ids) - SHINGLE + 1)}

    return frozenset(runs(spec.heldout_ids()) - runs(spec.other_ids()))


def calibrate(spec: LMFineTuning, steps: int = 3) -> tuple[float, float]:
    """Seconds per token for training (forward, backward, AdamW step) and for scoring, on one full batch."""
    model = spec.new_model()
    device = next(model.parameters()).device
    ids = torch.randint(spec.tokenizer.get_vocab_size(), (spec.batch_size, spec.block),
                        generator=torch.Generator().manual_seed(0)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step() -> None:
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    train = (time.perf_counter() - start) / (steps * ids.numel())
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(steps):
            model(ids)
    return train, (time.perf_counter() - start) / (steps * ids.numel())


@register("lm_fine_tuning", title="LM fine-tuning: held-out loss within a token budget", time_limit=None,
          timeout_hint=_TIMEOUT_HINT)
def lm_fine_tuning(fn: Callable, *, task: str, max_loss: float, max_epochs: float, seed: int = 0,
                   time_limit: float | None = None) -> str:
    """Grade ``fn(model, batches) -> model`` on ``task``: held-out nats/token <= ``max_loss`` within the budget.

    ``seed`` draws the training messages and their batch order (0: the notebook's; the re-grade uses another).
    ``time_limit`` replaces the calibrated wall-clock guard (seconds).
    """
    spec = _validate(task, max_loss, max_epochs, seed, time_limit)
    budget.expect_function(fn, "lm_fine_tuning")
    with torch.random.fork_rng(devices=[]):  # the notebook's random state is the same after the check
        if time_limit is None:
            train_seconds, score_seconds = calibrate(spec)
            time_limit = budget.wall_limit(train_seconds, score_seconds, max_epochs * spec.train_tokens,
                                           2 * spec.heldout_tokens)
        return budget.within(time_limit, lambda: _grade(fn, spec, max_loss, max_epochs, seed))


def _validate(task: str, max_loss: float, max_epochs: float, seed: int, time_limit: float | None) -> LMFineTuning:
    try:
        spec = get_lm_task(task)
    except ValueError as exc:
        raise CheckUsageError(str(exc)) from None
    if type(max_loss) not in (int, float) or not max_loss > 0:
        raise CheckUsageError(f"max_loss must be a positive number of nats, got {max_loss!r}")
    budget.check_arguments(max_epochs, seed, time_limit)
    return spec


def _grade(fn: Callable, spec: LMFineTuning, max_loss: float, max_epochs: float, seed: int) -> str:
    """Build, hand over, count, rebuild, score: everything under the check's time limit."""
    model, batches = spec.new_model(), spec.training_batches(seed)
    counter = TokenCounter(counted_modules(model), heldout_runs(spec))
    try:
        answer = call_student(fn, AsIs(model), AsIs(batches))
    finally:
        counter.pause()
    trained = _expect_model(answer, model, counter)
    counter.stop()
    scored = rebuilt(trained, spec.new_model(), hint="train the weights of the layers you were given; do not "
                                                     "replace or add layers.").eval()
    loss = spec.heldout_loss(scored)
    before = spec.heldout_loss(spec.new_model())
    allowed = max_epochs * spec.train_tokens
    report = [f"held-out  {loss:.4f} nats/token = perplexity {_perplexity(loss)}   (needed <= {max_loss:.4f}; "
              f"the pretrained model before fine-tuning: {before:.4f})",
              f"training  {counter.tokens:,} tokens read = {counter.tokens / spec.train_tokens:.2f} epochs of "
              f"{spec.train_tokens:,} (budget {max_epochs:g} epochs = {allowed:,.0f} tokens)"]
    if len(counter.seen_watched) >= LEAK_TOLERANCE:
        raise CheckFailure(f"your model was trained on held-out text ({len(counter.seen_watched)} runs of "
                           f"{SHINGLE} tokens found only in the test split).", details=report,
                           hint="train only on the `batches` you are given (or the 'train' and 'valid' messages): "
                                "the held-out messages measure what the model learned.")
    if counter.tokens > allowed:
        raise CheckFailure(f"over the budget: the model read {counter.tokens:,} training tokens, more than "
                           f"{max_epochs:g} epochs x {spec.train_tokens:,} = {allowed:,.0f}.", details=report,
                           hint="train for fewer epochs; the check counts every forward pass in train mode or with "
                                "gradients on (evaluate under model.eval() and torch.no_grad(): not counted).")
    if not math.isfinite(loss):
        raise CheckFailure("the trained model's held-out loss is not finite: the training diverged.", details=report,
                           hint="lower the learning rate, keep gradient clipping, and watch the loss each step.")
    one_batch = spec.batch_size * spec.block
    if loss <= max_loss and counter.tokens < one_batch:
        raise budget.suspicious_zero(counter.tokens, one_batch, "tokens", f"held-out loss {loss:.4f} nats/token")
    if loss > max_loss:
        shift = ("the token after the next one (shifted twice: labels=batch['targets'] in a model that shifts "
                 "its labels itself)") if counter.shifted_labels else _copies_its_input(scored, spec, loss)
        if shift is not None:
            raise CheckFailure(f"held-out loss above the threshold: your model learned to predict {shift}.",
                               details=report, hint=_SHIFT_HINT)
        hint = ("the model saw no training token: did your function train it (a forward pass, backward, step)?"
                if counter.tokens == 0 else
                "the loss went up: lower the learning rate." if loss > before else
                "tune the learning rate (with a budget of a few dozen steps, a rate too small moves the pretrained "
                "weights too little: try a larger one before a smaller one) or use more of the budget.")
        raise CheckFailure("held-out loss above the threshold.", details=report, hint=hint)
    return (f"held-out {loss:.4f} nats/token (perplexity {_perplexity(loss)}; before fine-tuning {before:.4f}), "
            f"{counter.tokens / spec.train_tokens:.2f} epochs of {spec.train_tokens:,} tokens (budget {max_epochs:g}).")


_SHIFT_HINT = ("batch['targets'] already holds the NEXT token of every input position: use "
               "F.cross_entropy(logits.flatten(0, 1), batch['targets'].flatten()). `model(ids, labels=ids)` shifts "
               "by itself, so pass it the inputs (labels=batch['input_ids']), never the already-shifted targets; and "
               "a loss against the inputs themselves teaches the model to copy the current token.")


@torch.no_grad()
def _copies_its_input(model: nn.Module, spec: LMFineTuning, loss: float) -> str | None:
    """Say so when the model predicts the token it reads much better than the next one (trained on targets = inputs)."""
    ids = spec.heldout_ids()
    length = min(model.config.context_length, spec.block)
    rows = min((len(ids) - 1) // length, 16)
    inputs = ids[: rows * length].view(rows, length).to(next(model.parameters()).device)
    logits = model(inputs).logits.float()
    itself = float(nn.functional.cross_entropy(logits.flatten(0, 1), inputs.flatten()))
    return "the token it is reading (targets equal to the inputs)" if itself < loss - 1.0 else None


def _perplexity(loss: float) -> str:
    return f"{math.exp(loss):.1f}" if loss < 50 else "inf"


def _expect_model(answer: object, model: nn.Module, counter: TokenCounter) -> nn.Module:
    """The trained model the student returned; a clear failure for None, other objects, or a model not handed over."""
    if answer is None:
        raise CheckFailure("your function returned None.", hint="end `fine_tune_lm` with `return model`: the check "
                                                                "scores the held-out text with it.")
    if not isinstance(answer, nn.Module):
        raise CheckFailure(f"your function should return the trained model (an nn.Module), got {kind(answer)}.",
                           hint="return the model itself (`return model`); the check computes the held-out loss.")
    if not counter.counts_in(answer):
        raise CheckFailure("your function returned a model the check did not hand it (or removed its counters).",
                           hint="train the `model` you are given and return it: the check counts the tokens it "
                                "trains on.")
    return answer
