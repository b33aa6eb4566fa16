"""GPT-1's task heads (Radford et al. 2018, Sec. 3.3): similarity (both orders summed) and multiple choice
(a softmax over one score per candidate), with the auxiliary LM loss L3 = L2 + lambda * L1 (Sec. 4.1).

The inputs they read are built in ``course_lib.text.task_formats``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from course_lib.models.gpt import GPT, GPTConfig, GPTForSequenceClassification
from course_lib.models.outputs import ModelOutput

LM_WEIGHT = 0.5  # lambda of the auxiliary LM loss, L3 = L2 + lambda * L1 (Radford et al. 2018, Sec. 4.1)


class GPTForSimilarity(GPTForSequenceClassification):
    """Similarity head: logits = W_y (h(A delim B) + h(B delim A)) (Radford et al. 2018, Sec. 3.3)."""

    def forward(
        self,
        first_ids: torch.Tensor,
        first_mask: torch.Tensor | None,
        second_ids: torch.Tensor,
        second_mask: torch.Tensor | None,
        labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        """``first_*``: the ``A delim B`` sequences, ``second_*``: ``B delim A``; logits ``[batch, classes]``."""
        if first_ids.size(0) != second_ids.size(0):
            raise ValueError(f"both orders need the same batch size, got {first_ids.size(0)} and {second_ids.size(0)}")
        first_features, first_body = self.features(first_ids, first_mask)
        second_features, second_body = self.features(second_ids, second_mask)
        logits = self.classifier(self.dropout(first_features + second_features))  # [batch, n_classes]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            if self.lm_weight > 0:
                lm_loss = self.auxiliary_lm_loss(first_body, first_ids, first_mask)
                lm_loss = lm_loss + self.auxiliary_lm_loss(second_body, second_ids, second_mask)
                loss = loss + self.lm_weight * lm_loss / 2
        return ModelOutput(logits=logits, loss=loss)


class GPTForMultipleChoice(GPTForSequenceClassification):
    """Multiple-choice head: one scalar score per ``context delim answer`` sequence, softmax over the candidates."""

    def __init__(self, config: GPTConfig, lm_weight: float = 0.0):
        super().__init__(config, n_classes=1, lm_weight=lm_weight)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> ModelOutput:
        """``input_ids [batch, choices, tokens]`` -> logits ``[batch, choices]``; ``labels [batch]`` = right answer."""
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be [batch, choices, tokens] (rank 3), got shape {tuple(input_ids.shape)}")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)}"
            )
        batch, choices, tokens = input_ids.shape
        flat_ids = input_ids.reshape(batch * choices, tokens)
        flat_mask = None if attention_mask is None else attention_mask.reshape(batch * choices, tokens)
        features, body = self.features(flat_ids, flat_mask)  # [batch * choices, dim]
        logits = self.classifier(self.dropout(features)).view(batch, choices)  # [batch, choices]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)  # the softmax over candidates
            if self.lm_weight > 0:
                loss = loss + self.lm_weight * self.auxiliary_lm_loss(body, flat_ids, flat_mask)
        return ModelOutput(logits=logits, loss=loss)


def with_new_tokens(config: GPTConfig, n_new: int) -> GPTConfig:
    """A copy of ``config`` whose vocabulary has ``n_new`` more rows (GPT-1's task tokens, Sec. 3.3)."""
    if n_new < 0:
        raise ValueError(f"n_new must be >= 0, got {n_new}")
    return dataclasses.replace(config, vocab_size=config.vocab_size + n_new)


@torch.no_grad()
def load_lm_weights(model: GPTForSequenceClassification, lm: GPT) -> GPTForSequenceClassification:
    """Copy a pretrained LM into ``model.gpt``; token rows beyond the LM's vocabulary (the task tokens) stay random.

    GPT-1 fine-tunes every pretrained weight and learns only the head W_y and the new tokens' embeddings from scratch
    (Radford et al. 2018, Sec. 3.2-3.3). Returns ``model``.
    """
    ours, theirs = model.gpt.config, lm.config
    different = [f.name for f in dataclasses.fields(GPTConfig)
                 if f.name != "vocab_size" and getattr(ours, f.name) != getattr(theirs, f.name)]
    if different or ours.vocab_size < theirs.vocab_size:
        raise ValueError(f"the LM does not fit the model: fields {different} differ, or the model's vocabulary "
                         f"({ours.vocab_size}) is smaller than the LM's ({theirs.vocab_size})")
    weights = dict(lm.state_dict())
    table = weights.pop("transformer.token_embedding.weight")  # [lm vocab, dim]
    weights.pop("lm_head.weight", None)  # tied to the token table
    missing, unexpected = model.gpt.load_state_dict(weights, strict=False)
    if unexpected or set(missing) != {"transformer.token_embedding.weight", "lm_head.weight"}:
        raise ValueError(f"unexpected keys {unexpected} or missing keys {missing}")
    model.gpt.transformer.token_embedding.weight[: len(table)] = table
    return model
