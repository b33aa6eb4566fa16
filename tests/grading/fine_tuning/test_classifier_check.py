"""The fine-tuning check owns what it grades: it builds the model and batches, counts examples, predicts the test split.

Most tests use the registry's tiny task ("tiny-spam-256": a 1-layer random BERT, 256 labels, 256 test messages, about
a second per run with one thread); the last one runs the real MiniLM task once, without training.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch
from torch import nn

from check_helpers import TINY, expect, one_thread_feedback_mode, train  # noqa: F401  (the fixture)
from course_lib.grading import Outcome, check
from course_lib.grading.fine_tuning import budget
from course_lib.grading.fine_tuning.tasks import get_task
from course_lib.text.batching import text_batches
from course_lib.text.spam import load_spam
from course_lib.training.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread_feedback_mode")  # every test: feedback mode, one thread


def test_reference_passes_within_the_budget():
    result = check.fine_tuning(train, **TINY)
    expect(result, Outcome.PASSED, "4.00 epochs of 256 labels (budget 4)")
    expect(check.fine_tuning(train, **TINY, seed=1), Outcome.PASSED)  # another labelled sample (the re-grade's way)


def test_training_three_times_too_long_fails_by_the_example_count():
    result = check.fine_tuning(lambda model, batches: train(model, batches, epochs=12), **TINY)
    expect(result, Outcome.FAILED, "over the budget: the model saw 3,072 training examples, more than 4 epochs x 256",
           "fewer epochs")
    assert "accuracy" in "\n".join(result.details)  # the scores are shown too


def test_evaluation_without_gradients_is_free_with_gradients_it_counts():
    valid = load_spam("valid")

    def evaluate_each_epoch(model, batches, grad=False):
        valid_batches = text_batches(valid.texts[:64], valid.labels[:64], get_task("tiny-spam-256").tokenizer,
                                     batch_size=32, max_length=64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(4):
            fit(model, batches, optimizer=optimizer, epochs=1, progress=False)
            model.eval()
            with torch.set_grad_enabled(grad):
                for batch in valid_batches:
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return model

    expect(check.fine_tuning(evaluate_each_epoch, **TINY), Outcome.PASSED)
    expect(check.fine_tuning(lambda m, b: evaluate_each_epoch(m, b, grad=True), **TINY), Outcome.FAILED,
           "over the budget: the model saw 1,280")


def test_paths_around_the_top_module_are_counted():
    def deep_copy_trained_too_long(model, batches):
        return train(copy.deepcopy(model), batches, epochs=12)

    def head_on_cached_features(model, batches):
        model.eval()
        with torch.no_grad():  # features once: not training, not counted
            cached = [(model.bert(b["input_ids"], b["attention_mask"]).pooled, b["labels"]) for b in batches]
        optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=1e-2)
        model.train()
        for _ in range(20):  # ... then the head for 20 epochs: counted at the head
            for pooled, labels in cached:
                loss = nn.functional.cross_entropy(model.classifier(pooled), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return model

    expect(check.fine_tuning(deep_copy_trained_too_long, **TINY), Outcome.FAILED, "saw 3,072 training examples")
    expect(check.fine_tuning(head_on_cached_features, **TINY), Outcome.FAILED, "saw 5,120 training examples")


@pytest.mark.parametrize("student, message, hint", [
    (lambda model, batches: None, "your function returned None.", "`return model`"),
    (lambda model, batches: torch.zeros(256, dtype=torch.long), "should return the trained model (an nn.Module), got "
     "torch.Tensor", "the check predicts the test split"),
    (lambda model, batches: get_task("tiny-spam-256").new_model(0), "returned a model the check did not hand it",
     "train the `model` you are given"),
    (lambda model, batches: nn.Sequential(model), "the returned model is a torch.nn.modules.container.Sequential with "
     "its own forward, not the course_lib.models.bert.BertForSequenceClassification you were given", "keep its class"),
], ids=["forgot-return", "predictions", "new-model", "wrapped"])
def test_answers_that_are_not_the_trained_model(student, message, hint):
    expect(check.fine_tuning(student, **TINY), Outcome.FAILED, message, hint)


def test_a_model_with_its_own_forward_or_removed_counters_is_refused():
    def own_forward(model, batches):
        model.forward = lambda **inputs: None
        return model

    def removes_counters(model, batches):
        for module in model.modules():
            module._forward_pre_hooks.clear()
        return train(model, batches, epochs=12)

    expect(check.fine_tuning(own_forward, **TINY), Outcome.FAILED, "with its own forward")
    expect(check.fine_tuning(removes_counters, **TINY), Outcome.FAILED, "or removed its counters")


def test_diverged_logits_get_their_own_message():
    def diverged(model, batches):
        train(model, batches, epochs=1)
        with torch.no_grad():
            model.classifier.weight.fill_(float("nan"))
        return model

    expect(check.fine_tuning(diverged, **TINY), Outcome.FAILED, "logits contain NaN or inf", "lower the learning rate")


def test_the_check_scores_a_fresh_copy_of_the_weights_so_hooks_and_new_layers_do_not_count():
    def hook_answers_the_test_labels(model, batches):  # the trick the re-grade could not see (docs/instructors.md)
        labels = iter(get_task("tiny-spam-256").test_labels().split(32))

        def rewrite(module, args, output):
            truth = next(labels)
            output.logits = nn.functional.one_hot(truth, 2).float() * 10
            return output

        model.register_forward_hook(rewrite)
        return model

    class Transposed(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, pooled):
            return self.head(pooled).T  # [classes, batch]

    def transposed(model, batches):
        model.classifier = Transposed(train(model, batches).classifier)
        return model

    expect(check.fine_tuning(hook_answers_the_test_labels, **TINY), Outcome.FAILED, "below the threshold",
           "the model saw no training example")
    expect(check.fine_tuning(transposed, **TINY), Outcome.FAILED,
           "layers differ from the model you were given (4 weights added, removed or reshaped, e.g. "
           "classifier.bias, classifier.head.bias", "do not replace or add layers")


def test_training_on_the_test_split_is_caught():
    def also_on_test(model, batches):
        test = load_spam("test")
        leaked = text_batches(test.texts[:48], test.labels[:48], get_task("tiny-spam-256").tokenizer, batch_size=16,
                              max_length=64)
        train(model, batches, epochs=3)
        return train(model, leaked, epochs=1)

    expect(check.fine_tuning(also_on_test, **TINY), Outcome.FAILED, "messages of the test split", "train only on")


def test_an_endless_loop_is_stopped_and_the_next_check_runs_normally():
    def endless(model, batches):
        train(model, batches, epochs=1)
        while True:
            try:
                model(input_ids=torch.ones(1, 4, dtype=torch.long))
            except BaseException:  # noqa: BLE001 - a student's catch-everything
                pass

    threads = threading.active_count()
    start = time.perf_counter()
    result = check.fine_tuning(endless, **TINY, time_limit=1)
    expect(result, Outcome.TIMED_OUT, "took longer than 1 s: stopped.", "calibrated")
    assert time.perf_counter() - start < 20 and threading.active_count() == threads
    expect(check.fine_tuning(train, **TINY), Outcome.PASSED)


def test_not_attempted_errors_and_usage():
    def stub(model, batches):
        # YOUR CODE HERE
        raise NotImplementedError()

    def typo(model, batches):
        return model.trian()

    expect(check.fine_tuning(stub, **TINY), Outcome.NOT_ATTEMPTED)
    result = check.fine_tuning(typo, **TINY)
    expect(result, Outcome.ERROR, "AttributeError")
    assert result.student_line.endswith("in typo: return model.trian()")
    for bad, match in [(dict(task="no-such-task"), "no fine-tuning task"), (dict(min_f1=93), "min_f1"),
                       (dict(max_epochs=0), "max_epochs"), (dict(seed=-1), "seed"), (dict(time_limit=0), "time_limit")]:
        with pytest.raises(ValueError, match=match):
            check.fine_tuning(train, **(TINY | bad))


def test_the_check_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    check.fine_tuning(train, **TINY)
    assert torch.equal(state, torch.random.get_rng_state())


def test_the_wall_clock_guard_is_calibrated_on_this_machine():
    task = get_task("tiny-spam-256")
    train_seconds, predict_seconds = budget.calibrate(task.new_model(0), task.batch_size, task.max_length, 8192)
    assert 0 < predict_seconds < train_seconds < 1
    limit = budget.wall_limit(train_seconds, predict_seconds, 4 * 256, 256)
    expected = budget.SLOWDOWN * (4 * 256 * train_seconds + 256 * predict_seconds) + budget.SLACK_SECONDS
    assert limit == pytest.approx(expected, abs=1.0) and limit >= budget.SLACK_SECONDS


def test_the_real_minilm_task_end_to_end_without_training():
    """The real task: MiniLM loaded, the test split predicted by the check; an untrained model fails honestly."""
    result = check.fine_tuning(lambda model, batches: model, task="minilm-spam-800", min_accuracy=0.98, min_f1=0.93,
                               max_epochs=3)
    expect(result, Outcome.FAILED, "below the threshold", "the model saw no training example")
    assert "training  0 examples seen = 0.00 epochs of 800 (budget 3 epochs = 2,400 examples)" in str(result)
