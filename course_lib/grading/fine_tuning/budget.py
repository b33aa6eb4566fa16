"""A fine-tuning budget that is fair on any machine: count training examples, time-limit only endless loops.

The budget is ``max_epochs`` passes over the labelled set, counted in examples the model sees while it trains
(forward passes in train mode or with gradients on), so a slow laptop and a fast GPU get the same budget. A wall-clock
limit still stops an endless loop: it is calibrated on this machine just before grading, by timing a few AdamW steps
of a fresh model on a full-length batch, and allows ``SLOWDOWN`` times the work the budget needs plus ``SLACK_SECONDS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from course_lib.grading.runtime.deadline import TimeLimitExceeded, time_limit
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError

SLOWDOWN = 5.0  # the limit allows this many times the calibrated time of the allowed work ...
SLACK_SECONDS = 30.0  # ... plus this (loading, Python overhead of small models, a busy machine)
RUN = 8  # a test message is recognised by runs of RUN word pieces that no train or valid message holds


class TrainingCounter:
    """Forward pre-hooks that count what each watched module reads in training, and note watched inputs seen.

    ``size(ids)`` is what one call adds (examples, tokens); ``keys(ids)`` the watched keys it contains (messages or
    runs of tokens that must not be trained on), collected in ``seen_watched``. The hooks are plain closures, so a
    ``copy.deepcopy`` of the model keeps counting here. A call counts in train mode or with gradients on.
    ``embedding`` (the model's token embedding): while the counter is active, a hook on every module also counts
    what any *other* embedding of that shape reads in training (``other``): a second model of the task's class (a
    "shadow" built with ``new_model`` or a copy without the hooks) trained and loaded back is counted too.
    """

    def __init__(self, modules: dict[str, nn.Module], size: Callable[[torch.Tensor], int],
                 keys: Callable[[torch.Tensor], set] | None = None, embedding: nn.Embedding | None = None):
        if embedding is not None and all(module is not embedding for module in modules.values()):
            modules = {**modules, "token embedding": embedding}
        self.counts = {name: 0 for name in modules}
        self.other = 0  # read in training by other embeddings of the same shape (another model of the class)
        self.seen_watched: set = set()
        self.active = True

        def add(first: torch.Tensor) -> int:
            if keys is not None and not first.is_floating_point() and first.dim() == 2:
                self.seen_watched |= keys(first)
            return size(first)

        def make_hook(name: str):
            def count(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if not self.active or not (module.training or torch.is_grad_enabled()):
                    return None
                first = kwargs.get("input_ids")
                if not isinstance(first, torch.Tensor):
                    first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
                if first is not None and first.dim() >= 1:
                    self.counts[name] += add(first)
                return None

            return count

        self.hooks = {name: make_hook(name) for name in modules}
        self.handles = [module.register_forward_pre_hook(self.hooks[name], with_kwargs=True)
                        for name, module in modules.items()]
        self._every_module = None
        if embedding is not None:
            shape, ours, cls = tuple(embedding.weight.shape), set(map(id, self.hooks.values())), type(embedding)

            def count_other(module: nn.Module, args: tuple) -> None:
                if (not self.active or type(module) is not cls or tuple(module.weight.shape) != shape
                        or not (module.training or torch.is_grad_enabled())
                        or any(id(hook) in ours for hook in module._forward_pre_hooks.values())):
                    return None
                first = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if first is not None and first.dim() >= 1 and not first.is_floating_point():
                    self.other += add(first)
                return None

            self._every_module = register_module_forward_pre_hook(count_other)

    @property
    def total(self) -> int:
        """What was read in training: the most any watched module read (a path that skips one is still counted),
        plus what other models of the same class read."""
        return max(self.counts.values()) + self.other

    def counts_in(self, model: nn.Module) -> bool:
        """True when ``model`` (the one handed over, or a deep copy of it) still carries the counting hooks."""
        ours = set(map(id, self.hooks.values()))
        return any(id(hook) in ours for module in model.modules() for hook in module._forward_pre_hooks.values())

    def pause(self) -> None:
        """Stop counting (the student's code has returned) and remove the hook on every module."""
        self.active = False
        if self._every_module is not None:
            self._every_module.remove()
            self._every_module = None

    def stop(self) -> None:
        """Stop counting and remove the hooks from the model handed over."""
        self.pause()
        for handle in self.handles:
            handle.remove()


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The model's token embedding: its ``nn.Embedding`` with the most rows (the vocabulary)."""
    return max((m for m in model.modules() if isinstance(m, nn.Embedding)), key=lambda m: m.num_embeddings)


def suspicious_zero(seen: int, one_batch: int, what: str, score: str) -> CheckFailure:
    """The failure for a trained-looking score after less than one batch was counted: the counters were escaped."""
    return CheckFailure(f"suspicious: {score}, yet the check counted {seen:,} training {what} (less than one batch). "
                        "Either the counters were removed or reset, or the weights come from a model the check did not "
                        "see.", hint="train the `model` you are given, in the function, and return it; do not touch "
                                     "its hooks. The re-grade gives no credit for a model it cannot count.")


class ExampleCounter(TrainingCounter):
    """Counts examples (the first dimension of each input); ``watched`` maps runs of RUN word pieces that occur only
    in test messages to the message's index (:func:`runs`): a message is recognised wherever it sits in a row."""

    def __init__(self, modules: dict[str, nn.Module], watched: Mapping = MappingProxyType({}), padding_id: int = 0,
                 embedding: nn.Embedding | None = None):
        def keys(ids: torch.Tensor) -> set:
            return {watched[run] for row in ids.tolist() for run in runs(row, padding_id) if run in watched}

        super().__init__(modules, size=lambda ids: int(ids.shape[0]), keys=keys if watched else None,
                         embedding=embedding)

    @property
    def examples(self) -> int:
        """Examples seen in training."""
        return self.total


def runs(ids: list[int], padding_id: int) -> set[tuple[int, ...]]:
    """Every run of RUN consecutive ids of a row, padding left out (an added or removed token changes few of them)."""
    ids = [i for i in ids if i != padding_id]
    return {tuple(ids[i:i + RUN]) for i in range(len(ids) - RUN + 1)}


def watched_runs(test_batches, other_batches, padding_id: int) -> Mapping[tuple[int, ...], int]:
    """Runs of the test messages found in no other message, each mapped to its test message's index."""
    known = {run for batch in other_batches for row in batch["input_ids"].tolist() for run in runs(row, padding_id)}
    rows = [row for batch in test_batches for row in batch["input_ids"].tolist()]
    return MappingProxyType({run: index for index, row in enumerate(rows) for run in runs(row, padding_id) - known})


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(model: nn.Module, batch_size: int, max_length: int, vocab_size: int, steps: int = 3
              ) -> tuple[float, float]:
    """Seconds per example for training (forward, backward, AdamW step) and for prediction, on a full-length batch."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000 if vocab_size > 2000 else 5, vocab_size, (batch_size, max_length),
                              generator=generator).to(device)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()

    def train_step() -> None:
        loss = nn.functional.cross_entropy(model(input_ids=input_ids).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step()  # warm-up: first-call allocations
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    _synchronize(device)
    train = (time.perf_counter() - start) / (steps * batch_size)
    model.eval()
    with torch.no_grad():
        model(input_ids=input_ids)
        start = time.perf_counter()
        for _ in range(steps):
            model(input_ids=input_ids)
        _synchronize(device)
    predict = (time.perf_counter() - start) / (steps * batch_size)
    return train, predict


def wall_limit(train_seconds: float, predict_seconds: float, allowed_examples: float, test_examples: int) -> float:
    """The endless-loop guard: SLOWDOWN x (the allowed training + the test predictions) + SLACK_SECONDS, whole s."""
    work = allowed_examples * train_seconds + test_examples * predict_seconds
    return float(math.ceil(SLOWDOWN * work + SLACK_SECONDS))


def expect_function(fn: object, exercise: str) -> None:
    """A model (or anything not a plain function) passed where the check wants the student's training function."""
    if isinstance(fn, nn.Module):
        raise CheckFailure(f"you passed a model ({type(fn).__name__}), not your function: pass the function itself, "
                           f"check.{exercise}(fine_tune, ...) without calling it; the check builds the model and "
                           "calls your function with it.", hint="write the function's name without parentheses.")


def check_arguments(max_epochs: float, seed: int, limit: float | None) -> None:
    """The budget's own arguments, as a notebook wrote them (a CheckUsageError names the bad one)."""
    if type(max_epochs) not in (int, float) or not max_epochs > 0:
        raise CheckUsageError(f"max_epochs must be a positive number, got {max_epochs!r}")
    if type(seed) is not int or seed < 0:
        raise CheckUsageError(f"seed must be a non-negative int, got {seed!r}")
    if limit is not None and (type(limit) not in (int, float) or not limit > 0):
        raise CheckUsageError(f"time_limit must be positive seconds or None, got {limit!r}")


def within(limit: float, grade: Callable[[], str]) -> str:
    """``grade()`` under the wall-clock guard; a time-out the student's code caught still counts as one."""
    with time_limit(limit) as deadline:
        message = grade()
    if deadline.expired:  # the student's code caught the time-out and the check finished after the limit
        raise TimeLimitExceeded(f"took longer than {limit:g} s")
    return message
