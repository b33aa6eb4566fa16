"""ELMo for a task: the frozen biLM, a learned scalar mix of its layers, and a small task head (Peters et al. 2018).

The paper adds ELMo to a task model by freezing the biLM, learning ``gamma`` and ``s_j`` with the task (Eq. 1) and
feeding the mixed vector to the task's own network (Sec. 3.3). Here the task network is the smallest one: the mean of
the mixed vectors over a message's real tokens, then one linear layer (a probe), so that what the mix learns is the
only thing that differs from one task to the next.

    model = ElmoForSequenceClassification(bilm, n_classes=2)
    model(input_ids, attention_mask).logits          # [batch, classes]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.models.elmo import ElmoBiLM, ElmoEmbedder
from course_lib.models.outputs import ModelOutput


class ElmoForSequenceClassification(nn.Module):
    """Frozen biLM -> ScalarMix (gamma, s_j learned) -> mean over real tokens -> dropout -> linear."""

    def __init__(self, bilm: ElmoBiLM, n_classes: int = 2, do_layer_norm: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        self.embedder = ElmoEmbedder(bilm, do_layer_norm=do_layer_norm, freeze_bilm=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * bilm.config.dim, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ModelOutput:
        """Class logits ``[batch, classes]`` for a right-padded batch; ``loss`` when ``labels`` are given."""
        mask = None if attention_mask is None else attention_mask.bool()
        elmo = self.embedder(input_ids, mask=mask)  # mixed: [batch, tokens, 2 * dim], zero on padding
        keep = elmo.mask[:, :, None].to(elmo.mixed.dtype)  # [batch, tokens, 1]
        pooled = (elmo.mixed * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # [batch, 2 * dim]
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ModelOutput(logits=logits, loss=loss)
