"""Transformer-XL: segment-level recurrence + relative positions (Dai et al. 2019), after ``mem_transformer.py``.

A long text is read in segments of ``segment_len`` tokens. Each layer attends over ``[memory; segment]``, where the
memory holds the previous ``mem_len`` hidden states of that layer's input, computed earlier and never
back-propagated into. Positions enter only through the relative terms of the attention
(``course_lib.blocks.relative_attention``). A layer is the course's ``TransformerBlock`` holding a
``RelativeMultiHeadAttention`` and a ReLU ``FeedForward``.

The authors' code names things differently; their names, once:

    course_lib                        authors (mem_transformer.py, train.py)
    n_layers, n_heads                 n_layer, n_head
    dim, head_dim, hidden_dim         d_model, d_head, d_inner
    attn_dropout, pre_norm            dropatt, pre_lnorm
    segment_len, mem_len              tgt_len, mem_len
    max_distance, same_length         clamp_len, same_length
    u, v                              r_w_bias, r_r_bias
    token_embedding, embedding_scale  word_emb, emb_scale
    blocks[i]                         layers[i] (RelPartialLearnableDecoderLayer)
    .attn.query / .key / .value       .dec_attn.qkv_net (one fused matrix; MultiHeadAttn: q_net + kv_net)
    .attn.position, .attn.output      .dec_attn.r_net (W_kR), .dec_attn.o_net
    .ln_1, .ln_2                      .dec_attn.layer_norm, .pos_ff.layer_norm
    .feed_forward.expand / .project   .pos_ff.CoreNet[0] / [3]

Simplifications of the authors' code: a plain tied embedding and softmax (their adaptive ones with no cutoffs),
no ``ext_len``. ``relative_positions=False`` gives the same model with absolute sinusoids added to the word
embeddings, restarting at 0 in every segment: the paper's strawman of Sec. 3.3 ("0 1 2 3 0 1 2 3").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.blocks.attention import MultiHeadAttention
from course_lib.blocks.embeddings import TokenEmbedding
from course_lib.blocks.feed_forward import FeedForward
from course_lib.blocks.relative_attention import (
    RelativeMultiHeadAttention,
    RelativePositionEmbedding,
    relative_distances,
)
from course_lib.blocks.transformer_block import TransformerBlock
from course_lib.models.outputs import ModelOutput
from course_lib.models.transformer_xl_memory import (
    attention_mask_with_memory,
    check_memory,
    is_plain_causal,
    update_memory,
)
from course_lib.training.losses import next_token_loss


@dataclass
class TransformerXLConfig:
    """Sizes and lengths of a Transformer-XL (the authors' enwik8 base: 12 layers, 8 heads, 512 wide)."""

    vocab_size: int = 256
    n_layers: int = 4
    n_heads: int = 4
    dim: int = 128  # width of every token vector
    head_dim: int = 32  # width of one head (n_heads * head_dim need not equal dim)
    hidden_dim: int = 512  # feed-forward width
    dropout: float = 0.1  # on embeddings, position embeddings, sublayer outputs and the feed-forward's hidden units
    attn_dropout: float = 0.0  # on the attention weights
    pre_norm: bool = False  # True: LayerNorm before each sublayer (and on the memory); False: after the residual
    segment_len: int = 64  # tokens predicted per forward pass
    mem_len: int = 64  # hidden states kept per layer for the next segment (0: no recurrence)
    max_distance: int = -1  # distances beyond this count as max_distance (-1: no clamp)
    same_length: bool = False  # every query attends to the same number (mem_len) of keys
    relative_positions: bool = True  # False: absolute positions restarting at 0 in every segment
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.dim % 2:
            raise ValueError(f"dim must be even for the sin/cos position embedding, got {self.dim}")
        if self.segment_len < 1 or self.mem_len < 0:
            raise ValueError(f"need segment_len >= 1 and mem_len >= 0, got segment_len={self.segment_len}, "
                             f"mem_len={self.mem_len}")
        if self.same_length and self.mem_len == 0:
            raise ValueError("same_length=True needs mem_len > 0: it limits every query to mem_len keys")


def transformer_xl_block(config: TransformerXLConfig) -> TransformerBlock:
    """One decoder layer (authors' RelPartialLearnableDecoderLayer, or DecoderLayer for absolute positions)."""
    attention_class = RelativeMultiHeadAttention if config.relative_positions else MultiHeadAttention
    attention = attention_class(config.dim, config.n_heads, dropout=config.dropout, attn_dropout=config.attn_dropout,
                                bias=False, head_dim=config.head_dim)
    feed_forward = FeedForward(config.dim, config.hidden_dim, dropout=config.dropout, activation="relu",
                               hidden_dropout=config.dropout)  # Linear-ReLU-Dropout-Linear-Dropout
    return TransformerBlock(config.dim, config.n_heads, config.hidden_dim, pre_norm=config.pre_norm,
                            attention=attention, feed_forward=feed_forward)


class TransformerXLModel(nn.Module):
    """Embedding + decoder layers with memory; returns hidden states and the next memory (authors' ``_forward``)."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = TokenEmbedding(config.vocab_size, config.dim)
        self.embedding_scale = math.sqrt(config.dim)  # the authors scale embeddings by sqrt(dim)
        self.position_embedding = RelativePositionEmbedding(config.dim)  # relative distances, or absolute positions
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(transformer_xl_block(config) for _ in range(config.n_layers))
        if config.relative_positions:  # the global biases of terms (c) and (d), shared by all layers
            self.u = nn.Parameter(torch.zeros(config.n_heads, config.head_dim))
            self.v = nn.Parameter(torch.zeros(config.n_heads, config.head_dim))
        self.apply(self._init_weights)
        if config.relative_positions:
            nn.init.normal_(self.u, std=config.init_std)
            nn.init.normal_(self.v, std=config.init_std)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) weights and zero biases, as the authors' ``train.py``."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def init_mems(self, batch: int) -> list[torch.Tensor] | None:
        """n_layers + 1 empty memories ``[batch, 0, dim]`` (None when mem_len is 0)."""
        if self.config.mem_len == 0:
            return None
        weight = self.token_embedding.weight
        return [weight.new_zeros(batch, 0, self.config.dim) for _ in range(self.config.n_layers + 1)]

    def relative_score_inputs(self, key_len: int, device: torch.device | None = None,
                              dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """What relative attention adds to every layer's scores: R for the distances key_len-1 .. 0, and u and v.

        The keyword arguments of a relative TransformerBlock (``positions``, ``u``, ``v``), shared by all layers.
        """
        if not self.config.relative_positions:
            raise ValueError("absolute positions (relative_positions=False) have no relative score inputs")
        device = device if device is not None else self.u.device
        distances = relative_distances(key_len, self.config.max_distance, device, dtype or self.u.dtype)
        return {"positions": self.dropout(self.position_embedding(distances)), "u": self.u, "v": self.v}

    def forward(self, input_ids: torch.Tensor, mems: list[torch.Tensor] | None = None,
                output_attentions: bool = False) -> ModelOutput:
        """``input_ids`` ``[batch, qlen]`` (one segment) + ``mems`` -> hidden states and the next ``mems``."""
        config = self.config
        if input_ids.dim() != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty [batch, tokens] tensor, got {tuple(input_ids.shape)}")
        batch, query_len = input_ids.shape
        cached_len = check_memory(mems, batch, config.n_layers, config.dim)
        allowed = attention_mask_with_memory(query_len, cached_len, config.mem_len, config.same_length,
                                             input_ids.device)  # [qlen, klen]
        words = self.token_embedding(input_ids) * self.embedding_scale  # [batch, qlen, dim]
        if config.relative_positions:  # R for the distances klen-1 .. 0, shared by all layers; u and v
            score_inputs = self.relative_score_inputs(cached_len + query_len, words.device, words.dtype)
            hidden = self.dropout(words)
        else:  # the strawman: positions 0 .. qlen-1 in every segment, whatever came before
            positions = torch.arange(query_len, device=words.device, dtype=words.dtype)
            score_inputs, hidden = {}, self.dropout(words + self.position_embedding(positions))
            if is_plain_causal(query_len, cached_len, config.mem_len, config.same_length):
                allowed = None  # lets the fused kernel use its causal fast path

        hidden_states, attentions = [hidden], []
        for index, block in enumerate(self.blocks):
            memory = mems[index] if cached_len > 0 else None  # this layer's input, cached: [batch, mlen, dim]
            hidden, weights = block(hidden, allowed, allowed is None, output_attentions, memory, **score_inputs)
            hidden_states.append(hidden)  # [batch, qlen, dim]
            attentions.append(weights)  # [batch, heads, qlen, klen] or None

        new_mems = update_memory(hidden_states, mems if cached_len > 0 else None, config.mem_len)
        return ModelOutput(hidden_states=tuple(hidden_states), mems=new_mems,
                           attentions=tuple(attentions) if output_attentions else None)


class TransformerXLLMHeadModel(nn.Module):
    """Transformer-XL with a tied softmax over the vocabulary: the language model."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = TransformerXLModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.dim, config.vocab_size)
        self.lm_head.weight = self.transformer.token_embedding.weight  # tie_weight=True
        nn.init.zeros_(self.lm_head.bias)

    def init_mems(self, batch: int) -> list[torch.Tensor] | None:
        """Empty memories to start a text with."""
        return self.transformer.init_mems(batch)

    def forward(self, input_ids: torch.Tensor, mems: list[torch.Tensor] | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        """One segment. ``labels[b, t]`` is the token that *follows* ``input_ids[b, t]`` (authors' target)."""
        output = self.transformer(input_ids, mems=mems, output_attentions=output_attentions)
        logits = self.lm_head(self.dropout(output.hidden_states[-1]))  # [batch, qlen, vocab]
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels shape {tuple(labels.shape)} must equal input_ids shape "
                                 f"{tuple(input_ids.shape)}")
            loss = next_token_loss(logits, labels)
        return ModelOutput(logits=logits, hidden_states=output.hidden_states, attentions=output.attentions,
                           loss=loss, mems=output.mems)

    def forward_in_segments(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                            mems: list[torch.Tensor] | None = None,
                            segment_len: int | None = None) -> ModelOutput:
        """Read a long ``[batch, tokens]`` text ``segment_len`` tokens at a time, carrying the memory along."""
        segment_len = segment_len or self.config.segment_len
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels shape {tuple(labels.shape)} must equal input_ids shape {tuple(input_ids.shape)}")
        logits = []
        for start in range(0, input_ids.size(1), segment_len):
            output = self(input_ids[:, start:start + segment_len], mems=mems)
            mems = output.mems  # carried to the next segment, already cut from the graph
            logits.append(output.logits)  # [batch, segment, vocab]
        logits = torch.cat(logits, dim=1)  # [batch, tokens, vocab]
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels)
        return ModelOutput(logits=logits, loss=loss, mems=mems)
