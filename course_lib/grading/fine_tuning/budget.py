"""A fine-tuning budget that is fair on any machine: count training examples, time-limit only endless loops.

The budget is ``max_epochs`` passes over the labelled set, counted in examples the model sees while it trains
(forward passes in train mode or with gradients on), so a slow laptop and a fast GPU get the same budget. A wall-clock
limit still stops an endless loop: it is calibrated on this machine just before grading, by timing a few AdamW steps
of a fresh model on a full-length batch, and allows ``SLOWDOWN`` times the work the budget needs plus ``SLACK_SECONDS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from course_lib.grading.runtime.deadline import TimeLimitExceeded, time_limit
from course_lib.grading.runtime.errors import CheckUsageError
from course_lib.text.batching import pad_id

SLOWDOWN = 5.0  # the limit allows this many times the calibrated time of the allowed work ...
SLACK_SECONDS = 30.0  # ... plus this (loading, Python overhead of small models, a busy machine)
PREFIX = 16  # a message is recognised by its first PREFIX word pieces (the same under any max_length >= 18)


class TrainingCounter:
    """Forward pre-hooks that count what each watched module reads in training, and note watched inputs seen.

    ``size(ids)`` is what one call adds (examples, tokens); ``keys(ids)`` the watched keys it contains (messages or
    runs of tokens that must not be trained on), collected in ``seen_watched``. The hooks are plain closures, so a
    ``copy.deepcopy`` of the model keeps counting here. A call counts in train mode or with gradients on.
    """

    def __init__(self, modules: dict[str, nn.Module], size: Callable[[torch.Tensor], int],
                 keys: Callable[[torch.Tensor], set] | None = None):
        self.counts = {name: 0 for name in modules}
        self.seen_watched: set[tuple[int, ...]] = set()
        self.active = True

        def make_hook(name: str):
            def count(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if not self.active or not (module.training or torch.is_grad_enabled()):
                    return None
                first = kwargs.get("input_ids")
                if not isinstance(first, torch.Tensor):
                    first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
                if first is None or first.dim() < 1:
                    return None
                self.counts[name] += size(first)
                if keys is not None and not first.is_floating_point() and first.dim() == 2:
                    self.seen_watched |= keys(first)
                return None

            return count

        self.hooks = {name: make_hook(name) for name in modules}
        self.handles = [module.register_forward_pre_hook(self.hooks[name], with_kwargs=True)
                        for name, module in modules.items()]

    @property
    def total(self) -> int:
        """What was read in training: the most any watched module read (a path that skips one is still counted)."""
        return max(self.counts.values())

    def counts_in(self, model: nn.Module) -> bool:
        """True when ``model`` (the one handed over, or a deep copy of it) still carries the counting hooks."""
        ours = set(map(id, self.hooks.values()))
        return any(id(hook) in ours for module in model.modules() for hook in module._forward_pre_hooks.values())

    def stop(self) -> None:
        """Stop counting and remove the hooks from the model handed over."""
        self.active = False
        for handle in self.handles:
            handle.remove()


class ExampleCounter(TrainingCounter):
    """Counts examples (the first dimension of each input); ``watched_keys`` are test messages (:func:`message_key`)."""

    def __init__(self, modules: dict[str, nn.Module], watched_keys: frozenset = frozenset(), padding_id: int = 0):
        def keys(ids: torch.Tensor) -> set:
            return {message_key(row, padding_id) for row in ids.tolist()} & watched_keys

        super().__init__(modules, size=lambda ids: int(ids.shape[0]), keys=keys if watched_keys else None)

    @property
    def examples(self) -> int:
        """Examples seen in training."""
        return self.total


def message_key(ids: list[int], padding_id: int) -> tuple[int, ...]:
    """A message's first PREFIX word pieces after [CLS], without padding and the final [SEP]."""
    end = len(ids)
    while end > 0 and ids[end - 1] == padding_id:
        end -= 1
    return tuple(ids[1 : end - 1][:PREFIX])


def keys_of(batches, tokenizer) -> set[tuple[int, ...]]:
    """The message keys of every example in ``batches``."""
    padding = pad_id(tokenizer)
    return {message_key(row, padding) for batch in batches for row in batch["input_ids"].tolist()}


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
