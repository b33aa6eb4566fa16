"""SmolLM2 (Allal et al. 2025), a LLaMA-style decoder: GPT-2's pre-norm stack with four changes made since 2019.

- RMSNorm instead of LayerNorm (Zhang & Sennrich 2019);
- rotary positions inside attention instead of a learned position table (Su et al. 2021);
- a SwiGLU feed-forward instead of GELU (Shazeer 2020);
- grouped-query attention: 9 query heads share 3 key/value heads (Ainslie et al. 2023).

Same outputs as course_lib's GPT: ``hidden_states`` are the embeddings and then every block's output, the last one
after the final norm (what the LM head reads, as in Hugging Face); ``attentions`` only with ``output_attentions``.
Padding works on either side: positions count real tokens only (``attention_mask.cumsum - 1``), so a left-padded
prompt gets the same numbers as the prompt alone, which batched generation and classification need.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.attention import MultiHeadAttention
from course_lib.blocks.embeddings import TokenEmbedding
from course_lib.blocks.feed_forward import SwiGLUFeedForward
from course_lib.blocks.kv_cache import KeyValueCache
from course_lib.blocks.masks import padding_mask
from course_lib.blocks.norms import RMSNorm
from course_lib.blocks.rotary import RotaryEmbedding
from course_lib.models.cached_generation import generate_cached
from course_lib.models.gpt import last_token_index
from course_lib.models.outputs import ModelOutput
from course_lib.training.losses import next_token_loss, shift_labels


@dataclass
class SmolLMConfig:
    """Sizes of a LLaMA-style decoder; ``smollm2_135m()`` gives SmolLM2-135M."""

    vocab_size: int = 49152
    context_length: int = 8192  # longest sequence it was trained on (rotary positions have no hard limit)
    dim: int = 576
    n_layers: int = 30
    n_heads: int = 9  # query heads
    n_kv_heads: int = 3  # key/value heads, each shared by n_heads / n_kv_heads query heads
    hidden_dim: int = 1536  # SwiGLU width
    norm_eps: float = 1e-5  # RMSNorm's epsilon
    rope_base: float = 100000.0  # rotary base (the RoFormer paper: 10,000)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.n_heads != 0 or (self.dim // self.n_heads) % 2 != 0:
            raise ValueError(f"dim ({self.dim}) / n_heads ({self.n_heads}) must be an even head size")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def smollm2_135m(cls) -> SmolLMConfig:
        """SmolLM2-135M: 30 layers, 576 wide, 9 query / 3 key-value heads of 64, SwiGLU 1536, 49,152 tokens, tied."""
        return cls()


class SmolLMBlock(nn.Module):
    """A pre-norm decoder layer: ``x + Attention(RMSNorm(x))``, then ``x + SwiGLU(RMSNorm(x))``."""

    def __init__(self, config: SmolLMConfig):
        super().__init__()
        self.norm_1 = RMSNorm(config.dim, eps=config.norm_eps)
        self.attn = MultiHeadAttention(config.dim, config.n_heads, bias=False, n_kv_heads=config.n_kv_heads)
        self.norm_2 = RMSNorm(config.dim, eps=config.norm_eps)
        self.feed_forward = SwiGLUFeedForward(config.dim, config.hidden_dim)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KeyValueCache | None = None,
        output_attentions: bool = False,
        is_causal: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [batch, tokens, dim]`` -> ``(x [batch, tokens, dim], attention weights or None)``."""
        attended, weights = self.attn(self.norm_1(x), mask, is_causal, output_attentions, rotary=rotary, cache=cache)
        x = x + attended
        x = x + self.feed_forward(self.norm_2(x))
        return x, weights


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among the real ones of its row (padding gets 0): ``[batch, tokens]``.

    ``[0, 0, 1, 1, 1]`` (left-padded) -> ``[0, 0, 0, 1, 2]``: the first real token is at position 0 on either side.
    """
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


class SmolLMModel(nn.Module):
    """The body: token embeddings (no position table), ``n_layers`` blocks, a final RMSNorm."""

    def __init__(self, config: SmolLMConfig):
        super().__init__()
        self.config = config
        self.token_embedding = TokenEmbedding(config.vocab_size, config.dim)
        self.rotary = RotaryEmbedding(config.head_dim, base=config.rope_base)
        self.blocks = nn.ModuleList(SmolLMBlock(config) for _ in range(config.n_layers))
        self.final_norm = RMSNorm(config.dim, eps=config.norm_eps)

    def new_cache(self) -> list[KeyValueCache]:
        """An empty key/value cache, one per block, for ``forward(..., cache=...)``."""
        return [KeyValueCache() for _ in self.blocks]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        cache: list[KeyValueCache] | None = None,
    ) -> ModelOutput:
        """``input_ids [batch, tokens]`` -> hidden states (and attentions).

        With a ``cache``, ``input_ids`` are only the new tokens and ``attention_mask`` (if any) covers the cached
        tokens and the new ones: ``[batch, cached + tokens]``.
        """
        past = len(cache[0]) if cache is not None else 0
        batch, tokens = input_ids.shape
        if attention_mask is None:
            positions = torch.arange(past, past + tokens, device=input_ids.device)[None, :]  # [1, tokens]
            mask = None
        else:
            if tuple(attention_mask.shape) != (batch, past + tokens):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
                                 f"{(batch, past + tokens)}: [batch, cached + new tokens]")
            positions = positions_from_mask(attention_mask)[:, past:]  # [batch, tokens]
            mask = None if bool(attention_mask.all()) else padding_mask(attention_mask)  # [batch, 1, 1, key]
        rotary = self.rotary(positions)  # (cos, sin): [batch, 1, tokens, head_dim] each
        x = self.token_embedding(input_ids)  # [batch, tokens, dim]
        # One new token (a generation step) is the last position: it may see every key, so no causal mask is needed.
        is_causal = tokens > 1
        hidden_states, attentions = [x], []
        for index, block in enumerate(self.blocks):
            x, weights = block(x, mask, rotary, None if cache is None else cache[index], output_attentions, is_causal)
            hidden_states.append(x)
            attentions.append(weights)
        hidden_states[-1] = self.final_norm(x)
        return ModelOutput(
            hidden_states=tuple(hidden_states),
            attentions=tuple(attentions) if output_attentions else None,
        )


class SmolLM(nn.Module):
    """The language model: the body plus an LM head tied to the token embedding, P(u) = softmax(h W_e^T)."""

    def __init__(self, config: SmolLMConfig):
        super().__init__()
        self.config = config
        self.model = SmolLMModel(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """The LM head's weight IS the token embedding (one tensor): P(u) = softmax(h W_e^T)."""
        self.lm_head.weight = self.model.token_embedding.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        cache: list[KeyValueCache] | None = None,
    ) -> ModelOutput:
        """Next-token logits ``[batch, tokens, vocab]``; with ``labels`` (usually ``input_ids``) also the LM loss."""
        body = self.model(input_ids, attention_mask, output_attentions, cache)
        logits = self.lm_head(body.hidden_states[-1])  # [batch, tokens, vocab]
        loss = None
        if labels is not None:
            mask = attention_mask if cache is None else None
            loss = next_token_loss(logits[:, :-1], shift_labels(labels, mask))
        return ModelOutput(logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions)

    def new_cache(self) -> list[KeyValueCache]:
        """An empty key/value cache for generation, one per block."""
        return self.model.new_cache()

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **options) -> torch.Tensor:
        """Greedy or sampled continuation with the key/value cache; see ``course_lib.models.cached_generation``."""
        return generate_cached(self, input_ids, max_new_tokens, **options)


class SmolLMForSequenceClassification(nn.Module):
    """GPT-1's recipe on SmolLM2: a linear layer on the last real token's final state (Radford et al. 2018, Eq. 3)."""

    def __init__(self, config: SmolLMConfig, n_classes: int, dropout: float = 0.0):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.config = config
        self.lm = SmolLM(config)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.dim, n_classes)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, ModelOutput]:
        """The last real token's final hidden state ``[batch, dim]`` (left or right padding), and the body output."""
        body = self.lm.model(input_ids, attention_mask, output_attentions)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        return body.hidden_states[-1][rows, last_token_index(attention_mask, input_ids)], body

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Class logits ``[batch, n_classes]``; with ``labels [batch]`` also the cross-entropy loss."""
        features, body = self.features(input_ids, attention_mask, output_attentions)
        logits = self.classifier(self.dropout(features))  # [batch, n_classes]
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ModelOutput(logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions)
