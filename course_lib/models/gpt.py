"""GPT-1 (Radford et al. 2018) and GPT-2 (Radford et al. 2019): a decoder-only transformer language model.

``hidden_states`` are ALWAYS returned (they cost nothing: the tensors exist anyway): the embedding output, then the
output of every block, where the last entry is what the LM head reads, i.e. after GPT-2's final LayerNorm
(the same convention as Hugging Face). ``attentions`` only with ``output_attentions=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.embeddings import LearnedPositionEmbedding, TokenEmbedding
from course_lib.blocks.masks import check_attention_mask, padding_mask
from course_lib.blocks.transformer_block import TransformerBlock
from course_lib.models.outputs import ModelOutput, check_sizes
from course_lib.training.losses import next_token_loss, shift_labels


@dataclass
class GPTConfig:
    """Sizes and switches of a GPT; the classmethods give the published models."""

    vocab_size: int = 50257
    context_length: int = 1024  # longest sequence (number of learned positions)
    dim: int = 768  # width of every token vector
    n_layers: int = 12
    n_heads: int = 12
    hidden_dim: int | None = None  # feed-forward width; None means 4 * dim
    dropout: float = 0.1  # on embeddings, sublayer outputs and the classifier input
    attn_dropout: float = 0.1  # on the attention weights
    layer_norm_eps: float = 1e-5
    pre_norm: bool = True  # True: GPT-2's pre-LN blocks; False: GPT-1's post-LN blocks
    final_norm: bool = True  # GPT-2 adds a LayerNorm after the last block; GPT-1 has none
    scale_residual_init: bool = True  # GPT-2: residual projections start with std 0.02 / sqrt(2 * n_layers)

    def __post_init__(self):
        if self.hidden_dim is None:
            self.hidden_dim = 4 * self.dim
        check_sizes(self, ("vocab_size", "context_length", "dim", "n_layers", "n_heads", "hidden_dim"))

    @classmethod
    def gpt1(cls) -> GPTConfig:
        """GPT-1: 12 post-LN layers, 768 wide, 12 heads, 512 positions, 40,478 BPE tokens (Radford et al. 2018)."""
        return cls(vocab_size=40478, context_length=512, dim=768, n_layers=12, n_heads=12,
                   pre_norm=False, final_norm=False, scale_residual_init=False)

    @classmethod
    def gpt2_124m(cls) -> GPTConfig:
        """GPT-2 small (124M parameters; called 117M in the paper, Table 2)."""
        return cls(dim=768, n_layers=12, n_heads=12)

    @classmethod
    def gpt2_355m(cls) -> GPTConfig:
        """GPT-2 medium (355M; "345M" in the paper)."""
        return cls(dim=1024, n_layers=24, n_heads=16)

    @classmethod
    def gpt2_774m(cls) -> GPTConfig:
        """GPT-2 large (774M; "762M" in the paper)."""
        return cls(dim=1280, n_layers=36, n_heads=20)

    @classmethod
    def gpt2_1558m(cls) -> GPTConfig:
        """GPT-2 XL (1558M; "1542M" in the paper)."""
        return cls(dim=1600, n_layers=48, n_heads=25)


def init_gpt_weights(model: nn.Module, n_layers: int, scale_residual_init: bool) -> None:
    """N(0, 0.02) weights and zero biases (Radford et al. 2018, Sec. 4.1); GPT-2 also shrinks residual projections."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = 0.02
            if scale_residual_init and name.endswith(("attn.output", "feed_forward.project")):
                std = 0.02 / math.sqrt(2 * n_layers)  # Radford et al. 2019, Sec. 2.3: "a factor of 1/sqrt(N)"
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class GPTModel(nn.Module):
    """The GPT body: token + position embeddings, then a stack of causal transformer blocks."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.token_embedding = TokenEmbedding(config.vocab_size, config.dim)
        self.position_embedding = LearnedPositionEmbedding(config.context_length, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.n_heads, config.hidden_dim, dropout=config.dropout,
                             attn_dropout=config.attn_dropout, layer_norm_eps=config.layer_norm_eps,
                             approximate_gelu=True, pre_norm=config.pre_norm)
            for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(config.dim, eps=config.layer_norm_eps) if config.final_norm else nn.Identity()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """``input_ids [batch, tokens]`` -> hidden states (embeddings + every block) and optionally attentions."""
        check_attention_mask(attention_mask, input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):  # no padding: keep the fused causal kernel
            mask = padding_mask(attention_mask)  # [batch, 1, 1, key]
        x = self.token_embedding(input_ids) + self.position_embedding(input_ids.size(1))  # [batch, tokens, dim]
        x = self.dropout(x)
        hidden_states, attentions = [x], []
        for block in self.blocks:
            x, weights = block(x, mask, is_causal=True, output_attentions=output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        hidden_states[-1] = self.ln_f(x)  # GPT-2's final LayerNorm (identity for GPT-1)
        return ModelOutput(
            hidden_states=tuple(hidden_states),
            attentions=tuple(attentions) if output_attentions else None,
        )


class GPT(nn.Module):
    """GPT language model: the body plus a linear LM head whose weight IS the token embedding (tied)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = GPTModel(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        init_gpt_weights(self, config.n_layers, config.scale_residual_init)
        self.lm_head.weight = self.transformer.token_embedding.weight  # tied: P(u) = softmax(h W_e^T), Eq. 2

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Next-token logits ``[batch, tokens, vocab]``; with ``labels`` (usually ``input_ids``) also the LM loss."""
        body = self.transformer(input_ids, attention_mask, output_attentions)
        logits = self.lm_head(body.hidden_states[-1])  # [batch, tokens, vocab]
        loss = None if labels is None else next_token_loss(logits[:, :-1], shift_labels(labels, attention_mask))
        return ModelOutput(logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions)


def last_token_index(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
    """Position of the last real (non-padding) token of each row, for left or right padding: ``[batch]``."""
    if attention_mask is None:
        return torch.full((input_ids.size(0),), input_ids.size(1) - 1, device=input_ids.device)
    positions = torch.arange(1, input_ids.size(1) + 1, device=input_ids.device)  # 1..tokens
    return ((attention_mask != 0).long() * positions).argmax(dim=-1)  # [batch]


class GPTForSequenceClassification(nn.Module):
    """GPT-1 fine-tuning: a linear layer on the last token's final state, P(y|x) = softmax(h_l^m W_y) (Eq. 3).

    With ``lm_weight`` > 0 the loss adds the auxiliary LM objective, L3 = L2 + lambda * L1 (Eq. 5; GPT-1 used 0.5).
    """

    def __init__(self, config: GPTConfig, n_classes: int, lm_weight: float = 0.0):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.config = config
        self.lm_weight = lm_weight
        self.gpt = GPT(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, n_classes)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, ModelOutput]:
        """The last real token's final hidden state ``[batch, dim]`` (GPT-1's "extract" token), and the body output."""
        body = self.gpt.transformer(input_ids, attention_mask, output_attentions)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        return body.hidden_states[-1][rows, last_token_index(attention_mask, input_ids)], body

    def auxiliary_lm_loss(
        self, body: ModelOutput, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """L1 on the task's own text, computed from hidden states already at hand (Radford et al. 2018, Eq. 5)."""
        return next_token_loss(self.gpt.lm_head(body.hidden_states[-1])[:, :-1], shift_labels(input_ids, attention_mask))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Class logits ``[batch, n_classes]``; with ``labels [batch]`` also the loss (L2, plus lambda * L1)."""
        features, body = self.features(input_ids, attention_mask, output_attentions)
        logits = self.classifier(self.dropout(features))  # [batch, n_classes]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            if self.lm_weight > 0:
                loss = loss + self.lm_weight * self.auxiliary_lm_loss(body, input_ids, attention_mask)
        return ModelOutput(logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions)
