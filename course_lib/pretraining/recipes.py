"""How each course checkpoint is pretrained: the model config (its dataclass), tokenizer, batches and schedule.

``RECIPES`` maps a checkpoint name (the folder under ``data/checkpoints/``) to its :class:`Recipe`;
``scripts/pretrain.py NAME`` trains it. ``learning_rate`` is the schedule and ``training_batch`` draws batch k from
its own seeded generator, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_lib.models.bert import BertConfig
from course_lib.models.elmo import ElmoConfig
from course_lib.models.gpt import GPTConfig
from course_lib.models.transformer_xl import TransformerXLConfig
from course_lib.pretraining.objectives import SpecialIds, bert_batch
from course_lib.text.batching import random_windows
from course_lib.text.next_sentence import next_sentence_pairs


@dataclass
class Recipe:
    """How one checkpoint is trained: model config, tokenizer, batch shape, steps and the AdamW schedule."""

    tokenizer: str
    config: GPTConfig | BertConfig | TransformerXLConfig | ElmoConfig  # the model itself, as its dataclass
    steps: int
    batch_size: int
    length: int  # tokens per LM window; for BERT the length of each of the two segments
    lr: float
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int = 50
    mlm_probability: float = 0.15  # BERT only: the share of tokens chosen for the MLM loss while training


GPT_SIZE = dict(vocab_size=8192, context_length=128, dim=128, n_layers=4, n_heads=4, dropout=0.1, attn_dropout=0.1)
RECIPES = {
    "bert": Recipe("wordpiece", BertConfig(vocab_size=8192, context_length=64, dim=128, n_layers=4, n_heads=4,
                                           dropout=0.1, attn_dropout=0.1),
                   steps=5000, batch_size=32, length=30, lr=1e-3, mlm_probability=0.4),
    "gpt2": Recipe("bpe", GPTConfig(**GPT_SIZE, pre_norm=True, final_norm=True, scale_residual_init=True),
                   steps=1000, batch_size=16, length=128, lr=2e-3),
    "gpt1": Recipe("bpe", GPTConfig(**GPT_SIZE, pre_norm=False, final_norm=False, scale_residual_init=False),
                   steps=1000, batch_size=16, length=128, lr=1e-3),
    "transformer-xl": Recipe("bpe", TransformerXLConfig(vocab_size=8192, n_layers=4, n_heads=4, dim=128, head_dim=32,
                                                        hidden_dim=512, dropout=0.1, attn_dropout=0.0, segment_len=64,
                                                        mem_len=64),
                             steps=1600, batch_size=8, length=256, lr=1e-3),
    "elmo": Recipe("wordpiece", ElmoConfig(vocab_size=8192, dim=64, hidden_size=256, num_layers=2, dropout=0.1),
                   steps=800, batch_size=16, length=64, lr=2e-3),
}


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10% of the peak."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def training_batch(kind: str, recipe: Recipe, ids: torch.Tensor, special: SpecialIds | None, step: int):
    """Batch ``step``: drawn by its own seeded generator, so a resumed run sees the same batches."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    if kind == "bert":
        pairs = next_sentence_pairs(ids, recipe.batch_size, recipe.length, generator)
        return bert_batch(pairs, special, generator, mlm_probability=recipe.mlm_probability)
    return random_windows(ids, recipe.length + 1, recipe.batch_size, generator)
