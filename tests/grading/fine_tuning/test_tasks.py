"""Fine-tuning tasks: seed 0 is exactly what notebooks 00 and 02 build; other seeds draw other labelled samples."""

from __future__ import annotations

import pytest
import torch

from course_lib.grading.fine_tuning.tasks import FINE_TUNING_TASKS, SpamFineTuning, TinyBody, get_task, register_task
from course_lib.models.bert import BertConfig, BertForSequenceClassification
from course_lib.pretraining.pretrained import load_minilm
from course_lib.text.batching import text_batches
from course_lib.text.spam import load_spam


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def same_batches(first, second) -> bool:
    first, second = list(first), list(second)
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, second))


@pytest.mark.parametrize("name, labels, test_batch_size", [("minilm-spam-150", 150, 16), ("minilm-spam-800", 800, 32)])
def test_seed_0_is_what_the_notebooks_build(name, labels, test_batch_size, minilm):
    """Notebook 00 (150 labels, test in batches of 16) and 02 (800 labels, batches of 32), as their cells build them."""
    body, tokenizer = minilm
    task = get_task(name)
    train = load_spam("train").sample(labels, seed=0)
    notebook = text_batches(train.texts, train.labels, tokenizer, batch_size=16, max_length=64, shuffle=True,
                            by_length=True, seed=0)
    mine = task.training_batches(seed=0)
    for _ in range(3):  # three epochs: the same reshuffled order each epoch
        assert same_batches(notebook, mine)
    test = load_spam("test")
    assert same_batches(text_batches(test.texts, test.labels, tokenizer, batch_size=test_batch_size, max_length=64,
                                     by_length=True), task.test_batches())
    assert torch.equal(task.test_labels(), torch.cat([b["labels"] for b in task.test_batches()]))

    torch.manual_seed(0)  # the notebooks' new_classifier()
    model = BertForSequenceClassification(BertConfig.minilm(), n_classes=2)
    model.bert.load_state_dict(body.state_dict())
    ours = task.new_model(seed=0, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values()))
    assert ours.training  # handed over ready to train, like a freshly built model


def test_gpt1_seed_0_is_what_notebook_01_builds():
    """Notebook 01: the course GPT-1 + three task tokens + a head on <extract>, lm_weight 0.5; 150 labels."""
    from course_lib.models.gpt import GPTForSequenceClassification
    from course_lib.models.gpt_heads import LM_WEIGHT, load_lm_weights, with_new_tokens
    from course_lib.pretraining.checkpoints import load_checkpoint
    from course_lib.text.task_formats import add_task_tokens

    lm, tokenizer = load_checkpoint("gpt1")
    framed, _ = add_task_tokens(tokenizer)
    task = get_task("gpt1-spam-150")
    train = load_spam("train").sample(150, seed=0)
    notebook = text_batches(train.texts, train.labels, framed, batch_size=16, max_length=64, shuffle=True, seed=0,
                            by_length=True)
    mine = task.training_batches(seed=0)
    assert same_batches(notebook, mine) and same_batches(notebook, mine)  # two epochs
    test = load_spam("test")
    assert same_batches(text_batches(test.texts, test.labels, framed, batch_size=16, max_length=64, by_length=True),
                        task.test_batches())
    torch.manual_seed(0)
    model = load_lm_weights(GPTForSequenceClassification(with_new_tokens(lm.config, 3), n_classes=2,
                                                         lm_weight=LM_WEIGHT), lm)
    ours = task.new_model(seed=0, device="cpu")
    assert ours.lm_weight == LM_WEIGHT
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values()))


def test_another_seed_draws_another_sample_and_head():
    task = get_task("tiny-spam-256")
    assert task.training_set(0).texts != task.training_set(1).texts
    assert task.training_set(1).spam_fraction == pytest.approx(task.training_set(0).spam_fraction, abs=0.01)
    assert not same_batches(task.training_batches(0), task.training_batches(1))
    assert not torch.equal(task.new_model(0).classifier.weight, task.new_model(1).classifier.weight)
    assert torch.equal(task.new_model(1).bert.embeddings.token.weight, task.new_model(0).bert.embeddings.token.weight)
    assert len(task.test_labels()) == 256 and "256 test messages" in task.describe()


def test_registry():
    assert {"minilm-spam-150", "minilm-spam-800", "gpt1-spam-150", "tiny-spam-256"} <= set(FINE_TUNING_TASKS)
    with pytest.raises(ValueError, match="known: .*minilm-spam-800"):
        get_task("minilm-spam-801")
    with pytest.raises(ValueError, match="exists already"):
        register_task("minilm-spam-800", SpamFineTuning(labels=10))
    register_task("tiny-spam-32", SpamFineTuning(labels=32, body=TinyBody(dim=16), test_messages=64))
    try:
        task = get_task("tiny-spam-32")
        assert len(list(task.training_batches())) == 2 and task.new_model().classifier.in_features == 16
    finally:
        del FINE_TUNING_TASKS["tiny-spam-32"]
    with pytest.raises(ValueError, match="labels must be >= 1"):
        SpamFineTuning(labels=0)
