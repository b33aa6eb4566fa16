"""ELMo: a bidirectional LSTM language model and the task-specific mix of its layers (Peters et al. 2018).

The biLM maximises the sum of the two directions' log-likelihoods (Eq. before Sec. 3.2):

    sum_k  log p(t_k | t_1..t_{k-1}; Θx, →ΘLSTM, Θs)  +  log p(t_k | t_{k+1}..t_N; Θx, ←ΘLSTM, Θs)

with the token representation Θx and the softmax Θs shared by both directions and separate LSTMs.

Documented simplification: the token representation is a **word embedding**, not the paper's character CNN
(2048 filters, two highway layers, projection to 512). The course pretrains its biLM on a small corpus on a CPU in
minutes, where a character model would spend its budget learning spelling; every part the lecture is about (the two
LM directions, LSTMP layers with the residual connection, the shared embedding and softmax, the joint objective and
the scalar mix of layers) is unchanged. allennlp's cell and projection clipping (at 3) are left out as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_lib.blocks.lstm_lm import ProjectedLSTMStack, resolve_lengths, reverse_padded
from course_lib.blocks.scalar_mix import ScalarMix
from course_lib.models.outputs import ModelOutput
from course_lib.training.losses import IGNORE_INDEX, next_token_loss


@dataclass
class ElmoConfig:
    """Sizes of the biLM; the paper's are dim=512, hidden_size=4096, num_layers=2."""

    vocab_size: int = 1000
    dim: int = 128  # token embedding size = LSTM projection size
    hidden_size: int = 512  # LSTM cells per layer, projected down to `dim`
    num_layers: int = 2
    dropout: float = 0.1


class ElmoBiLM(nn.Module):
    """Forward and backward LSTM LMs sharing one token embedding and one softmax (Peters et al. 2018, Sec. 3.1)."""

    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)  # Θx, shared
        self.forward_lm = ProjectedLSTMStack(config.dim, config.hidden_size, config.num_layers, config.dropout)
        self.backward_lm = ProjectedLSTMStack(config.dim, config.hidden_size, config.num_layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.softmax = nn.Linear(config.dim, config.vocab_size)  # Θs, shared

    @property
    def num_output_layers(self) -> int:
        """Layers the embedder returns: the token layer plus one per LSTM layer."""
        return self.config.num_layers + 1

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, compute_loss: bool = True) -> ModelOutput:
        """Run both LMs over a right-padded ``[batch, tokens]`` batch.

        Returns ``logits`` ``[2, batch, tokens, vocab]`` (0: forward LM predicting the next token, 1: backward LM
        predicting the previous one), ``hidden_states`` = the token layer ``[x; x]`` followed by ``[forward_j;
        backward_j]`` for every LSTM layer j (each ``[batch, tokens, 2 * dim]``, zero on padding) and ``loss`` = the
        joint objective: forward NLL + backward NLL, each averaged over the tokens it predicts.
        """
        lengths, mask = resolve_lengths(input_ids, lengths, mask)
        if input_ids.max() >= self.config.vocab_size or input_ids.min() < 0:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        tokens = self.token_embedding(input_ids)  # [batch, tokens, dim]
        x = self.dropout(tokens)
        forward_layers = self.forward_lm(x)  # each [batch, tokens, dim]; position k has read t_1..t_k
        # the backward LM reads each sentence right to left: reverse, run, reverse back
        backward_layers = [reverse_padded(h, lengths) for h in self.backward_lm(reverse_padded(x, lengths))]

        keep = mask[:, :, None].to(tokens.dtype)  # [batch, tokens, 1]
        hidden_states = [torch.cat([tokens, tokens], dim=-1) * keep]  # layer 0: [x; x]
        for forward_h, backward_h in zip(forward_layers, backward_layers, strict=True):
            hidden_states.append(torch.cat([forward_h, backward_h], dim=-1) * keep)  # [batch, tokens, 2 * dim]

        forward_logits = self.softmax(self.dropout(forward_layers[-1]))  # [batch, tokens, vocab]
        backward_logits = self.softmax(self.dropout(backward_layers[-1]))
        logits = torch.stack([forward_logits, backward_logits])  # [2, batch, tokens, vocab]
        loss = self.joint_loss(logits, input_ids, mask) if compute_loss else None
        return ModelOutput(logits=logits, hidden_states=tuple(hidden_states), loss=loss)

    @staticmethod
    def joint_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward NLL of t_{k+1} from position k plus backward NLL of t_{k-1} from position k."""
        forward_logits, backward_logits = logits
        if not mask[:, 1:].any():
            raise ValueError("every sentence has a single token: the language models have nothing to predict")
        # forward: position k predicts token k+1 (both must be real tokens)
        forward_targets = input_ids[:, 1:].masked_fill(~mask[:, 1:], IGNORE_INDEX)  # [batch, tokens - 1]
        forward_nll = next_token_loss(forward_logits[:, :-1], forward_targets)
        # backward: position k predicts token k-1, the backward LM's "next" token
        backward_targets = input_ids[:, :-1].masked_fill(~(mask[:, :-1] & mask[:, 1:]), IGNORE_INDEX)
        backward_nll = next_token_loss(backward_logits[:, 1:], backward_targets)
        return forward_nll + backward_nll


@dataclass
class ElmoEmbeddings:
    """What the embedder returns for a padded batch."""

    layers: torch.Tensor  # [batch, num_layers + 1, tokens, 2 * dim]: [x; x], then [forward_j; backward_j]
    mixed: torch.Tensor  # [batch, tokens, 2 * dim]: gamma * sum_j s_j * layer_j, zero on padding
    mask: torch.Tensor  # [batch, tokens], True on real tokens


class ElmoEmbedder(nn.Module):
    """ELMo_k^task = gamma^task * sum_j s_j^task h_{k,j} over a (usually frozen) biLM (Peters et al. 2018, Eq. 1)."""

    def __init__(self, bilm: ElmoBiLM, do_layer_norm: bool = False, freeze_bilm: bool = True) -> None:
        super().__init__()
        self.bilm = bilm
        self.scalar_mix = ScalarMix(bilm.num_output_layers, do_layer_norm=do_layer_norm)
        if freeze_bilm:
            self.bilm.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> ElmoEmbeddings:
        """Embed a right-padded batch of sentences of different lengths (give ``lengths`` or ``mask``)."""
        lengths, mask = resolve_lengths(input_ids, lengths, mask)
        output = self.bilm(input_ids, lengths=lengths, compute_loss=False)
        layers = output.hidden_states  # num_layers + 1 tensors of [batch, tokens, 2 * dim]
        mixed = self.scalar_mix(layers, mask) * mask[:, :, None].to(layers[0].dtype)
        return ElmoEmbeddings(layers=torch.stack(layers, dim=1), mixed=mixed, mask=mask)
