"""Inside the notebook, the cheap ways around a fine-tuning check's count fail, with a message that says what happened.

A second model of the task's class (a "shadow", or a copy without the hooks) is counted through its token embedding;
a counter emptied through the hooks' closures, or hooks hidden while training, leave a trained-looking score with
(almost) nothing counted: "suspicious"; a test message is recognised wherever it sits in a row; cached held-out text
is handed out as a copy; the weights are read without calling a method of the returned model; passing the model
instead of the function, and an LM trained on the wrong shift, are named. Tiny tasks, about a second per check.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from check_helpers import TINY, expect, one_thread_feedback_mode, train  # noqa: F401  (the fixture)
from course_lib.grading import Outcome, check
from course_lib.grading.fine_tuning.lm_tasks import get_lm_task
from course_lib.grading.fine_tuning.tasks import get_task
from course_lib.text.batching import text_batches
from course_lib.text.spam import load_spam

TINY_LM = dict(task="tiny-sms-lm", max_loss=7.6, max_epochs=3)


pytestmark = pytest.mark.usefixtures("one_thread_feedback_mode")  # every test: feedback mode, one thread


def test_shadow_models_are_counted_and_their_test_split_training_is_seen():
    def shadow_too_long(model, batches):
        shadow = get_task("tiny-spam-256").new_model(0)
        model.load_state_dict(train(shadow, batches, epochs=12).state_dict())
        return model

    def shadow_on_the_test_split(model, batches):
        test = load_spam("test")
        leaked = text_batches(test.texts[:256], test.labels[:256], get_task("tiny-spam-256").tokenizer, batch_size=16,
                              max_length=64)
        shadow = get_task("tiny-spam-256").new_model(0)
        model.load_state_dict(train(shadow, leaked, epochs=3).state_dict())
        return model

    def shadow_within_the_budget(model, batches):  # the same work as training the model itself: fine
        model.load_state_dict(train(get_task("tiny-spam-256").new_model(0), batches).state_dict())
        return model

    expect(check.fine_tuning(shadow_too_long, **TINY), Outcome.FAILED, "over the budget: the model saw 3,072")
    expect(check.fine_tuning(shadow_on_the_test_split, **TINY), Outcome.FAILED, "messages of the test split")
    expect(check.fine_tuning(shadow_within_the_budget, **TINY), Outcome.PASSED, "4.00 epochs")


def test_hidden_hooks_are_counted_and_an_emptied_counter_is_suspicious():
    def hides_the_hooks(model, batches):
        saved = {module: dict(module._forward_pre_hooks) for module in model.modules()}
        for module in model.modules():
            module._forward_pre_hooks.clear()
        train(model, batches, epochs=6)
        for module, hooks in saved.items():
            module._forward_pre_hooks.update(hooks)
        return model

    def empties_the_counter(model, batches):
        train(model, batches, epochs=6)
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                for cell in hook.__closure__ or ():
                    counter = cell.cell_contents
                    if hasattr(counter, "counts"):
                        counter.counts.update(dict.fromkeys(counter.counts, 0))
                        counter.other = 0
        return model

    expect(check.fine_tuning(hides_the_hooks, **TINY), Outcome.FAILED, "over the budget: the model saw 1,536")
    result = check.fine_tuning(empties_the_counter, **TINY)
    expect(result, Outcome.FAILED, "suspicious: accuracy", "do not touch its hooks")
    assert "counted 0 training examples" in result.message


def test_test_messages_are_recognised_with_an_extra_token_per_row():
    def extra_token(model, batches):
        test = load_spam("test")
        leaked = text_batches(["ok " + text for text in test.texts[:256]], test.labels[:256],
                              get_task("tiny-spam-256").tokenizer, batch_size=16, max_length=64)
        train(model, batches, epochs=2)
        return train(model, leaked, epochs=1)

    expect(check.fine_tuning(extra_token, **TINY), Outcome.FAILED, "messages of the test split")


def test_the_weights_are_read_without_calling_the_returned_models_methods():
    called = []

    def overrides(model, batches):
        model.state_dict = lambda *args, **kwargs: called.append("state_dict") or {}
        model.bert._save_to_state_dict = lambda *args, **kwargs: called.append("_save_to_state_dict")
        model._register_state_dict_hook(lambda *args: called.append("hook"))
        return model

    expect(check.fine_tuning(overrides, **TINY), Outcome.FAILED, "below the threshold", "saw no training example")
    assert called == []


@pytest.mark.parametrize("exercise, arguments", [("fine_tuning", TINY), ("lm_fine_tuning", TINY_LM)])
def test_passing_the_model_instead_of_the_function_says_pass_the_function(exercise, arguments):
    model = (get_task("tiny-spam-256").new_model(0) if exercise == "fine_tuning"
             else get_lm_task("tiny-sms-lm").new_model())
    expect(getattr(check, exercise)(model, **arguments), Outcome.FAILED, "pass the function itself")


def train_lm(model, batches, epochs=3, lr=1e-2, targets="targets"):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in batches:
            if targets == "labels=targets":  # the model shifts again: two tokens ahead
                loss = model(batch["input_ids"], labels=batch["targets"]).loss
            else:
                logits = model(batch["input_ids"]).logits
                loss = F.cross_entropy(logits.flatten(0, 1), batch[targets].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("targets, message", [
    ("input_ids", "the token it is reading (targets equal to the inputs)"),
    ("labels=targets", "the token after the next one (shifted twice"),
])
def test_lm_trained_on_the_wrong_shift_is_named(targets, message):
    result = check.lm_fine_tuning(lambda model, batches: train_lm(model, batches, targets=targets), **TINY_LM)
    expect(result, Outcome.FAILED, message, "already holds the NEXT token")


def test_lm_shadow_on_held_out_text_and_the_cached_held_out_copy():
    task = get_lm_task("tiny-sms-lm")

    def shadow_on_heldout(model, batches):
        heldout = task.heldout_ids()[:2048].view(32, 64)
        shadow = task.new_model()
        optimizer = torch.optim.AdamW(shadow.parameters(), lr=1e-2)
        for _ in range(2):
            loss = shadow(heldout, labels=heldout).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.load_state_dict(shadow.state_dict())
        return model

    def overwrites_the_heldout_text(model, batches):
        task.heldout_ids().fill_(0)  # an untrained model on a stream of one token would "score" well
        return model

    expect(check.lm_fine_tuning(shadow_on_heldout, **TINY_LM), Outcome.FAILED, "trained on held-out text")
    expect(check.lm_fine_tuning(overwrites_the_heldout_text, **TINY_LM), Outcome.FAILED, "above the threshold",
           "saw no training token")
    assert bool(task.heldout_ids().ne(0).any())


def test_lm_emptied_counter_is_suspicious():
    def empties_the_counter(model, batches):
        train_lm(model, batches)
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                for cell in hook.__closure__ or ():
                    if hasattr(cell.cell_contents, "counts"):
                        cell.cell_contents.counts.update(dict.fromkeys(cell.cell_contents.counts, 0))
        return model

    expect(check.lm_fine_tuning(empties_the_counter, **TINY_LM), Outcome.FAILED, "suspicious: held-out loss")


def test_the_counting_hook_on_every_module_is_gone_after_the_check():
    before = dict(nn.modules.module._global_forward_pre_hooks)
    check.fine_tuning(lambda model, batches: 1 / 0, **TINY)
    check.lm_fine_tuning(train_lm, **TINY_LM)
    assert dict(nn.modules.module._global_forward_pre_hooks) == before
