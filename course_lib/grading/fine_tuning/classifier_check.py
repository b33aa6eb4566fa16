"""Check for the notebooks' final exercise: fine-tune a classifier within a budget; the check owns what it grades.

The student writes ``fine_tune(model, batches) -> model``. The check builds a fresh pretrained classifier and the
labelled batches from a task (``course_lib.grading.fine_tuning.tasks``), counts the training examples the model sees (the budget:
``max_epochs`` passes over the labelled set), predicts the fixed test split itself and scores accuracy and spam F1;
the student's function is never handed test texts or labels (the split ships with the course: training on it is
detected, and the re-grade can score on a file the students never had instead, ``--heldout``). The spam set is about
87% ham, so always answering "ham" already scores ~87% accuracy with spam F1 = 0; the check prints that baseline
next to the student's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from course_lib.grading.fine_tuning import budget
from course_lib.grading.fine_tuning.tasks import SpamFineTuning, get_task
from course_lib.grading.fine_tuning.trained_weights import rebuilt
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError
from course_lib.grading.runtime.inputs import expect_exact_tensor, kind
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import AsIs, call_student
from course_lib.text.batching import pad_id, text_batches
from course_lib.text.spam import load_spam
from course_lib.training.loop import model_inputs
from course_lib.training.metrics import binary_metrics

_LAYERS_HINT = ("the check rebuilds the classifier from its weights (`state_dict`) to score it: train the "
                "weights of the layers you were given, do not replace or add layers.")
LEAK_TOLERANCE = 3  # test-only messages a model may meet in training before the check calls it training on the test

_TIMEOUT_HINT = ("the limit is calibrated on this machine just before grading: "
                 f"{budget.SLOWDOWN:g} x the time of the whole allowed training + {budget.SLACK_SECONDS:g} s. Look for "
                 "an endless loop (a `while` whose condition never changes); very small batches are also slow.")


@register("fine_tuning", title="Fine-tuning: accuracy and spam F1 within a budget", time_limit=None,
          timeout_hint=_TIMEOUT_HINT)
def fine_tuning(fn: Callable, *, task: str, min_accuracy: float, min_f1: float, max_epochs: float, seed: int = 0,
                time_limit: float | None = None) -> str:
    """Grade ``fn(model, batches) -> model`` on ``task``: test accuracy and spam F1, at most ``max_epochs`` epochs.

    ``seed`` draws the labelled sample, its batch order and the new head (0: the notebook's; the re-grade uses a
    held-out one). ``time_limit`` replaces the calibrated wall-clock guard (seconds).
    """
    spec = _validate(task, min_accuracy, min_f1, max_epochs, seed, time_limit)
    budget.expect_function(fn, "fine_tuning")
    with torch.random.fork_rng(devices=[]):  # the notebook's random state is the same after the check
        if time_limit is None:
            train_seconds, predict_seconds = budget.calibrate(spec.new_model(seed), spec.batch_size,
                                                              spec.max_length, spec.body.vocab_size())
            time_limit = budget.wall_limit(train_seconds, predict_seconds, max_epochs * spec.labels,
                                           len(spec.test_set()))
        return budget.within(time_limit, lambda: _grade(fn, spec, min_accuracy, min_f1, max_epochs, seed))


def _validate(task: str, min_accuracy: float, min_f1: float, max_epochs: float, seed: int,
              time_limit: float | None) -> SpamFineTuning:
    """The task, after checking the notebook's arguments (a CheckUsageError names the bad one)."""
    try:
        spec = get_task(task)
    except ValueError as exc:
        raise CheckUsageError(str(exc)) from None
    for name, value in (("min_accuracy", min_accuracy), ("min_f1", min_f1)):
        if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
            raise CheckUsageError(f"{name} must be a number in [0, 1], got {value!r}")
    budget.check_arguments(max_epochs, seed, time_limit)
    return spec


def _grade(fn: Callable, spec: SpamFineTuning, min_accuracy: float, min_f1: float, max_epochs: float,
           seed: int) -> str:
    """Build, hand over, count, predict, score: everything under the check's time limit."""
    model, batches = spec.new_model(seed), spec.training_batches(seed)
    counter = budget.ExampleCounter(spec.counted_modules(model), _test_only_runs(spec), pad_id(spec.tokenizer),
                                    embedding=budget.token_embedding(model))
    try:
        answer = call_student(fn, AsIs(model), AsIs(batches))
    finally:
        counter.pause()
    trained = _expect_model(answer, model, counter)
    counter.stop()
    predicted = _predict(rebuilt(trained, spec.new_model(seed), hint=_LAYERS_HINT), spec)
    truth = spec.test_labels()
    metrics = binary_metrics(truth, predicted)
    allowed = max_epochs * spec.labels
    baseline = float((truth == 0).float().mean())  # accuracy of always answering "ham"
    report = [f"accuracy  {metrics.accuracy:.4f}   (needed >= {min_accuracy:.4f}; always-ham baseline {baseline:.4f})",
              f"spam F1   {metrics.f1:.4f}   (needed >= {min_f1:.4f}; precision {metrics.precision:.4f}, "
              f"recall {metrics.recall:.4f})",
              f"training  {counter.examples:,} examples seen = {counter.examples / spec.labels:.2f} epochs of "
              f"{spec.labels} (budget {max_epochs:g} epochs = {allowed:,.0f} examples)"]
    if len(counter.seen_watched) >= LEAK_TOLERANCE:
        raise CheckFailure(f"your model was trained on {len(counter.seen_watched)} messages of the test split.",
                           details=report, hint="train only on the `batches` you are given (or the 'train' and "
                                                "'valid' splits): the test split measures what the model learned.")
    if counter.examples > allowed:
        raise CheckFailure(f"over the budget: the model saw {counter.examples:,} training examples, more than "
                           f"{max_epochs:g} epochs x {spec.labels} = {allowed:,.0f}.", details=report,
                           hint="train for fewer epochs; the check counts every forward pass in train mode or with "
                                "gradients on (evaluate under model.eval() and torch.no_grad(): not counted).")
    passes = metrics.accuracy >= min_accuracy and metrics.f1 >= min_f1
    if passes and counter.examples < spec.batch_size:
        raise budget.suspicious_zero(counter.examples, spec.batch_size, "examples",
                                     f"accuracy {metrics.accuracy:.4f} and spam F1 {metrics.f1:.4f}")
    if not passes:
        low = ("(accuracy and F1)." if metrics.accuracy < min_accuracy and metrics.f1 < min_f1
               else "(accuracy)." if metrics.accuracy < min_accuracy else "(spam F1).")
        hint = ("your model answers 'ham' for (almost) every message: check the learning rate, train longer, and "
                "make sure the labels reach the loss." if int(predicted.sum()) <= 0.01 * len(truth)
                else "tune the learning rate, train a little longer (within the budget), or unfreeze more layers.")
        if counter.examples == 0:
            hint = "the model saw no training example: did your function train it (a forward pass, backward, step)?"
        raise CheckFailure("below the threshold " + low, details=report, hint=hint)
    return (f"accuracy {metrics.accuracy:.4f} (always-ham {baseline:.4f}), spam F1 {metrics.f1:.4f}, "
            f"{counter.examples / spec.labels:.2f} epochs of {spec.labels} labels (budget {max_epochs:g}).")


def _expect_model(answer: object, model: nn.Module, counter: budget.ExampleCounter) -> nn.Module:
    """The trained model the student returned; a clear failure for None, predictions, or a model the check did not make."""
    if answer is None:
        raise CheckFailure("your function returned None.", hint="end `fine_tune` with `return model` (the trained "
                                                                "model): the check predicts the test split with it.")
    if not isinstance(answer, nn.Module):
        raise CheckFailure(f"your function should return the trained model (an nn.Module), got {kind(answer)}.",
                           hint="return the model itself (`return model`); the check predicts the test split, "
                                "your function does not need to.")
    if not counter.counts_in(answer):
        raise CheckFailure("your function returned a model the check did not hand it (or removed its counters).",
                           hint="train the `model` you are given and return it: the check counts the examples it "
                                "trains on.")
    if type(answer) is not type(model) or "forward" in vars(answer):
        raise CheckFailure(f"the returned model is a {kind(answer)} with its own forward, not the {kind(model)} "
                           f"you were given.", hint="train the model's weights; keep its class and its forward.")
    return answer


def _predict(model: nn.Module, spec: SpamFineTuning) -> torch.Tensor:
    """Predicted classes for the test split, in batch order; a clear failure for logits of the wrong shape or NaN."""
    device = next(model.parameters()).device
    model.eval()
    predicted = []
    with torch.no_grad():
        for batch in spec.test_batches():
            size = len(batch["labels"])
            output = model(**{k: v.to(device) for k, v in model_inputs(model, batch).items()})
            logits = expect_exact_tensor(getattr(output, "logits", output), "logits")
            if tuple(logits.shape) != (size, spec.n_classes):
                transposed = " (transposed?)" if tuple(logits.shape) == (spec.n_classes, size) else ""
                raise CheckFailure(f"the trained model's logits for a batch of {size} test messages have shape "
                                   f"{list(logits.shape)}{transposed}; expected [{size}, {spec.n_classes}].",
                                   hint="keep the classifier's output: one row of class scores per message.")
            bad = ~torch.isfinite(logits)
            if bool(bad.any()):
                raise CheckFailure(f"the trained model's logits contain NaN or inf ({int(bad.any(-1).sum())} of "
                                   f"{size} messages in a test batch): the training diverged.",
                                   hint="lower the learning rate, keep gradient clipping, and check the loss each "
                                        "step (it becomes nan first).")
            predicted.append(logits.argmax(-1).cpu())
    return torch.cat(predicted)


@lru_cache(maxsize=8)
def _test_only_runs(spec: SpamFineTuning):
    """Runs of word pieces found only in test messages (SMS repeats, e.g. "Sorry, I'll call later", are allowed)."""
    tokenizer, other = spec.tokenizer, []
    for split in ("train", "valid"):
        texts = load_spam(split)
        other += text_batches(texts.texts, texts.labels, tokenizer, batch_size=256, max_length=spec.max_length)
    return budget.watched_runs(spec.test_batches(), other, pad_id(tokenizer))
