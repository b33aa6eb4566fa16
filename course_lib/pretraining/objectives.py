"""Pretraining objectives for the course checkpoints: BERT's MLM + NSP and next-token LM windows, and their losses.

- ``bert_batch``: ``[CLS] A [SEP] B [SEP]`` with segment ids and padding (the pairs come from
  ``course_lib.text.next_sentence``), then Task #1's masking (``course_lib.text.masking.mask_tokens``: 15%, 80/10/10).
- ``lm_window_loss`` / ``bert_losses``, and ``PretrainingObjective``: the loss of one batch for each model kind.

The LM batches are ``course_lib.text.batching.random_windows``; the data-parallel plumbing is ``distributed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.text.masking import IGNORE_INDEX, mask_tokens
from course_lib.text.next_sentence import SentencePair
from course_lib.training.losses import next_token_loss

KINDS = ("gpt", "bert", "transformer_xl", "elmo")


@dataclass(frozen=True)
class SpecialIds:
    """The WordPiece ids BERT's input format needs."""

    cls: int
    sep: int
    pad: int
    mask: int
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialIds:
        """Read [CLS], [SEP], [PAD], [MASK] from a ``tokenizers.Tokenizer``; ValueError naming any that is missing."""
        found = {name: tokenizer.token_to_id(f"[{name.upper()}]") for name in ("cls", "sep", "pad", "mask")}
        missing = [f"[{name.upper()}]" for name, i in found.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer has no {', '.join(missing)}: BERT needs a WordPiece vocabulary")
        return cls(**found, vocab_size=tokenizer.get_vocab_size())


def bert_batch(pairs: list[SentencePair], special: SpecialIds, generator: torch.Generator,
               mlm_probability: float = 0.15) -> dict[str, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` rows, padded, masked: the inputs and both labels of ``BertForPreTraining``."""
    rows = [[special.cls, *p.a, special.sep, *p.b, special.sep] for p in pairs]
    longest = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), longest), special.pad, dtype=torch.long)  # [batch, tokens]
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for i, (row, pair) in enumerate(zip(rows, pairs)):
        input_ids[i, :len(row)] = torch.tensor(row)
        token_type_ids[i, len(pair.a) + 2:len(row)] = 1  # segment B, including its closing [SEP]
        attention_mask[i, :len(row)] = 1
    masked, mlm_labels = mask_tokens(input_ids, special.mask, special.vocab_size,
                                     special_ids=(special.cls, special.sep, special.pad),
                                     mlm_probability=mlm_probability, generator=generator)
    return {"input_ids": masked, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "mlm_labels": mlm_labels, "next_sentence_labels": torch.tensor([p.label for p in pairs])}


def bert_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MLM and NSP losses (and accuracies) of a ``BertForPreTraining``; ``loss`` = MLM + NSP as in its forward.

    The MLM head runs on the masked positions only (15% of the tokens), which gives the same loss as the model's
    forward at a fraction of the cost of scoring every position against the whole vocabulary.
    """
    body = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    chosen = batch["mlm_labels"] != IGNORE_INDEX  # [batch, tokens]
    mlm_logits = model.mlm(body.hidden_states[-1][chosen])  # [chosen, vocab]
    targets = batch["mlm_labels"][chosen]
    nsp_logits = model.next_sentence(body.pooled)  # [batch, 2]
    mlm_loss = F.cross_entropy(mlm_logits, targets)
    nsp_loss = F.cross_entropy(nsp_logits, batch["next_sentence_labels"])
    return {"loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
            "mlm_accuracy": (mlm_logits.argmax(-1) == targets).float().mean(),
            "nsp_accuracy": (nsp_logits.argmax(-1) == batch["next_sentence_labels"]).float().mean()}


def lm_window_loss(kind: str, model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """The LM loss of ``[batch, length + 1]`` windows for a ``"gpt"``, ``"transformer_xl"`` or ``"elmo"`` model.

    GPT and Transformer-XL: next-token cross-entropy (XL reads the window segment by segment, carrying its memory).
    ELMo: the biLM's joint objective, forward NLL + backward NLL.
    """
    inputs, targets = windows[:, :-1], windows[:, 1:]  # [batch, length] each
    if kind == "gpt":
        return next_token_loss(model(inputs).logits, targets)  # logits: [batch, length, vocab]
    if kind == "transformer_xl":
        return model.forward_in_segments(inputs, labels=targets).loss
    if kind == "elmo":
        return model(windows).loss
    raise ValueError(f"kind must be one of {KINDS[:1] + KINDS[2:]} for LM windows, got {kind!r}")


class PretrainingObjective(nn.Module):
    """A model and its pretraining loss as one module, so that DistributedDataParallel wraps the whole forward."""

    def __init__(self, kind: str, model: nn.Module):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.model = kind, model

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if self.kind == "bert":
            return bert_losses(self.model, batch)["loss"]
        return lm_window_loss(self.kind, self.model, batch)
