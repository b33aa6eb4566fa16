"""Graded language-model fine-tuning tasks: what ``check.lm_fine_tuning(fine_tune_lm, task=...)`` trains and scores.

The language-model counterpart of ``course_lib.grading.fine_tuning.tasks``: a task builds everything the student's
``fine_tune_lm(model, batches)`` is handed (a fresh copy of a pretrained LM and batches of unlabelled target text)
and the held-out text the check scores on, which the student's code never receives. The target text is the SMS
messages (each followed by ``<|endoftext|>``): training text from the *train* split, held-out text from the *test*
split, so the grade measures how well the model learned the new domain, not what it memorised.

``seed`` picks which training messages (and their batch order); seed 0 is the notebook's, another seed a held-out
draw for the re-grade.

    task = LM_TASKS["gpt2-sms-lm"]
    model, batches = task.new_model(), task.training_batches(seed=0)
    task.heldout_loss(model)        # nats per token on the held-out messages
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.utils.data import DataLoader

from course_lib.models.gpt import GPT, GPTConfig
from course_lib.runtime import pick_device
from course_lib.text.batching import lm_batches
from course_lib.text.spam import load_spam
from course_lib.text.tokenizers import load_tokenizer
from course_lib.training.losses import window_loss

END_OF_TEXT = "<|endoftext|>"


@lru_cache(maxsize=1)
def _course_gpt2() -> tuple[dict, GPTConfig, Tokenizer]:
    """The course GPT-2 checkpoint's weights, config and tokenizer, read (and sha256-checked) once per process."""
    from course_lib.pretraining.checkpoints import load_checkpoint

    model, tokenizer = load_checkpoint("gpt2")
    return {k: v.clone() for k, v in model.state_dict().items()}, model.config, tokenizer


@dataclass(frozen=True)
class CourseGPT2Body:
    """The course GPT-2 (4 pre-LN layers, 128 wide, pretrained on 34 plays) and its byte-level BPE."""

    name: str = "the course GPT-2"

    def tokenizer(self) -> Tokenizer:
        return _course_gpt2()[2]

    def new_model(self) -> GPT:
        weights, config, _ = _course_gpt2()
        model = GPT(config)
        model.load_state_dict(weights)
        return model


@lru_cache(maxsize=4)
def _tiny_weights(body: TinyGPTBody) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return GPT(body.config()).state_dict()


@dataclass(frozen=True)
class TinyGPTBody:
    """A seconds-long stand-in for tests: a 1-layer, 32-wide GPT-2 with random weights (seed 1234), course BPE."""

    name: str = "tiny random GPT-2"
    dim: int = 32

    def config(self) -> GPTConfig:
        return GPTConfig(vocab_size=8192, context_length=64, dim=self.dim, n_layers=1, n_heads=2, dropout=0.0,
                         attn_dropout=0.0)

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer("bpe")

    def new_model(self) -> GPT:
        model = GPT(self.config())
        model.load_state_dict(_tiny_weights(self))
        return model


def message_stream(texts, tokenizer: Tokenizer) -> torch.Tensor:
    """Messages joined into one 1-D id tensor, each followed by ``<|endoftext|>``."""
    end = tokenizer.token_to_id(END_OF_TEXT)
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return torch.tensor([i for e in encodings for i in [*e.ids, end]], dtype=torch.long)


@dataclass(frozen=True)
class LMFineTuning:
    """Fine-tune a pretrained GPT on ``train_tokens`` tokens of SMS text; score nats/token on held-out messages.

    Training batches hold ``batch_size`` blocks of ``block`` tokens: ``batch["input_ids"]`` and ``batch["targets"]``
    (the next token at every position, ``[batch, block]`` each). The held-out text is the first ``heldout_tokens``
    (+1) tokens of the test split's messages, scored in windows of the model's context length.
    """

    train_tokens: int = 8_192
    block: int = 64
    batch_size: int = 8
    heldout_tokens: int = 4_096
    body: CourseGPT2Body | TinyGPTBody = field(default_factory=CourseGPT2Body)

    def __post_init__(self):
        for name in ("train_tokens", "block", "batch_size", "heldout_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_tokens % self.block:
            raise ValueError(f"train_tokens ({self.train_tokens}) must be a multiple of block ({self.block})")

    @property
    def tokenizer(self) -> Tokenizer:
        return self.body.tokenizer()

    @property
    def blocks(self) -> int:
        """Training blocks per epoch."""
        return self.train_tokens // self.block

    def describe(self) -> str:
        return (f"{self.body.name} on {self.train_tokens:,} tokens of training SMS messages ({self.blocks} blocks of "
                f"{self.block}, batches of {self.batch_size}); scored on {self.heldout_tokens:,} tokens of the test "
                f"split's messages")

    def new_model(self, device: torch.device | str | None = None) -> GPT:
        """A fresh copy of the pretrained LM, in train mode, on the course's device."""
        return self.body.new_model().train().to(pick_device() if device is None else device)

    def training_ids(self, seed: int = 0) -> torch.Tensor:
        """``train_tokens + 1`` tokens of training messages, the messages in an order drawn with ``seed``."""
        texts = list(load_spam("train").texts)
        random.Random(seed).shuffle(texts)
        ids = message_stream(texts, self.tokenizer)
        if len(ids) < self.train_tokens + 1:
            raise ValueError(f"the training messages hold {len(ids)} tokens, fewer than {self.train_tokens + 1}")
        return ids[: self.train_tokens + 1]

    def training_batches(self, seed: int = 0) -> DataLoader:
        """Shuffled batches of consecutive blocks (a new order each epoch): ``input_ids`` and ``targets``."""
        return lm_batches(self.training_ids(seed), self.block, self.batch_size, shuffle=True, seed=seed)

    def heldout_ids(self) -> torch.Tensor:
        """The held-out text: the test split's messages in file order, ``heldout_tokens + 1`` tokens (a new copy each
        call: code that writes into it changes nothing the check scores on)."""
        return _heldout_ids(self).clone()

    def other_ids(self) -> torch.Tensor:
        """The train and valid splits' messages as one stream (text a student may legitimately train on); a copy."""
        return _other_ids(self).clone()

    @torch.no_grad()
    def heldout_loss(self, model: nn.Module, batch: int = 8) -> float:
        """Mean next-token cross-entropy (nats) on the held-out text, in windows of the model's context length."""
        return window_loss(model, self.heldout_ids(), model.config.context_length, batch)


@lru_cache(maxsize=4)
def _heldout_ids(task: LMFineTuning) -> torch.Tensor:
    return message_stream(load_spam("test").texts, task.tokenizer)[: task.heldout_tokens + 1]


@lru_cache(maxsize=4)
def _other_ids(task: LMFineTuning) -> torch.Tensor:
    return message_stream(load_spam("train").texts + load_spam("valid").texts, task.tokenizer)


LM_TASKS: dict[str, LMFineTuning] = {
    "gpt2-sms-lm": LMFineTuning(),  # notebook 05
    "tiny-sms-lm": LMFineTuning(train_tokens=4_096, heldout_tokens=2_048, body=TinyGPTBody()),  # tests
}


def get_lm_task(name: str) -> LMFineTuning:
    """The task registered under ``name``; a ValueError lists the known names."""
    try:
        return LM_TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"no LM fine-tuning task named {name!r}; known: {', '.join(sorted(LM_TASKS))}") from None
