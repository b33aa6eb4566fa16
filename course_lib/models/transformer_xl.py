"""Transformer-XL: segment-level recurrence + relative positions (Dai et al. 2019), after ``mem_transformer.py``.

A long text is read in segments of ``tgt_len`` tokens. Each layer attends over ``[memory; segment]``, where the memory
holds the previous ``mem_len`` hidden states of that layer's input, computed earlier and never back-propagated into.
Positions enter only through the relative terms of the attention (see ``course_lib.blocks.relative_attention``).

Evaluation shortcuts, both exact: the projected position embeddings are computed once per key length, and the
memory also carries its keys and values, so a segment projects only its own tokens (``TransformerXLMemory``).

Simplifications of the authors' code: a plain tied embedding and softmax (their adaptive ones with no cutoffs),
no ``ext_len``. ``relative_positions=False`` gives the same model with absolute sinusoids added to the word
embeddings, restarting at 0 in every segment: the paper's strawman of Sec. 3.3 ("0 1 2 3 0 1 2 3").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.blocks.relative_attention import RelativePositionEmbedding, relative_distances
from course_lib.models.outputs import ModelOutput
from course_lib.models.transformer_xl_layers import AbsoluteDecoderLayer, RelativeDecoderLayer
from course_lib.models.transformer_xl_memory import (
    TransformerXLMemory,
    attention_mask_with_memory,
    check_memory,
    is_plain_causal,
    update_memory,
)
from course_lib.training.losses import next_token_loss


@dataclass
class TransformerXLConfig:
    """Sizes and lengths, named as in the authors' code (their enwik8 base: 12 layers, 8 heads, 512 wide)."""

    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_head: int = 32
    d_inner: int = 512
    dropout: float = 0.1
    dropatt: float = 0.0
    pre_lnorm: bool = False
    tgt_len: int = 64  # segment length: tokens predicted per forward pass
    mem_len: int = 64  # hidden states kept per layer for the next segment (0: no recurrence)
    clamp_len: int = -1  # distances beyond this count as clamp_len (-1: no clamp)
    same_length: bool = False  # every query attends to the same number (mem_len) of keys
    relative_positions: bool = True  # False: absolute positions restarting at 0 in every segment
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for the sin/cos position embedding, got {self.d_model}")
        if self.tgt_len < 1 or self.mem_len < 0:
            raise ValueError(f"need tgt_len >= 1 and mem_len >= 0, got tgt_len={self.tgt_len}, mem_len={self.mem_len}")
        if self.same_length and self.mem_len == 0:
            raise ValueError("same_length=True needs mem_len > 0: it limits every query to mem_len keys")


class TransformerXLModel(nn.Module):
    """Embedding + decoder layers with memory; returns hidden states and the next memory (authors' ``_forward``)."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.config = config
        self.word_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.emb_scale = math.sqrt(config.d_model)  # the authors scale embeddings by sqrt(d_model)
        self.pos_emb = RelativePositionEmbedding(config.d_model)  # relative distances, or absolute positions
        self.drop = nn.Dropout(config.dropout)
        layer_type = RelativeDecoderLayer if config.relative_positions else AbsoluteDecoderLayer
        self.layers = nn.ModuleList(
            layer_type(config.n_head, config.d_model, config.d_head, config.d_inner, config.dropout,
                       config.dropatt, config.pre_lnorm)
            for _ in range(config.n_layer)
        )
        if config.relative_positions:  # u and v, shared by all layers as in the authors' code
            self.r_w_bias = nn.Parameter(torch.zeros(config.n_head, config.d_head))  # u
            self.r_r_bias = nn.Parameter(torch.zeros(config.n_head, config.d_head))  # v
        self._position_key_cache: tuple | None = None
        self.apply(self._init_weights)
        if config.relative_positions:
            nn.init.normal_(self.r_w_bias, std=config.init_std)
            nn.init.normal_(self.r_r_bias, std=config.init_std)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) weights and zero biases, as the authors' ``train.py``."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def init_mems(self, batch: int) -> list[torch.Tensor] | None:
        """n_layer + 1 empty memories ``[batch, 0, d_model]`` (None when mem_len is 0)."""
        if self.config.mem_len == 0:
            return None
        weight = self.word_emb.weight
        return [weight.new_zeros(batch, 0, self.config.d_model) for _ in range(self.config.n_layer + 1)]

    def evaluation_fingerprint(self) -> tuple | None:
        """Identifies the current weights when work may be reused (eval mode, no gradients), else None.

        In-place updates bump a parameter's version counter, so a changed weight changes the fingerprint.
        """
        if self.training or torch.is_grad_enabled():
            return None
        return tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in self.parameters())

    def relative_position_keys(self, key_len: int, device, dtype, weights: tuple | None = None) -> list[torch.Tensor]:
        """Every layer's W_kR R for distances klen-1 .. 0: ``[heads, klen, d_head]`` each.

        They depend on no token, so in evaluation (``weights`` given) the last ones are reused while the
        weights are unchanged: a segment-by-segment evaluation computes them once instead of once per segment.
        """
        key = (key_len, self.config.clamp_len, device, dtype, torch.is_inference_mode_enabled(), weights)
        if weights is not None and self._position_key_cache is not None and self._position_key_cache[0] == key:
            return self._position_key_cache[1]
        distances = relative_distances(key_len, self.config.clamp_len, device=device, dtype=dtype)
        position_embedding = self.drop(self.pos_emb(distances))  # [klen, d_model]
        position_keys = [layer.attention.position_keys(position_embedding) for layer in self.layers]
        self._position_key_cache = (key, position_keys) if weights is not None else None
        return position_keys

    def forward(self, input_ids: torch.Tensor, mems: list[torch.Tensor] | None = None,
                output_attentions: bool = False) -> ModelOutput:
        """``input_ids`` ``[batch, qlen]`` (one segment) + ``mems`` -> hidden states and the next ``mems``."""
        config = self.config
        if input_ids.dim() != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty [batch, tokens] tensor, got {tuple(input_ids.shape)}")
        batch, query_len = input_ids.shape
        memory_len = check_memory(mems, batch, config.n_layer, config.d_model)
        key_len = memory_len + query_len
        allowed = attention_mask_with_memory(query_len, memory_len, config.mem_len, config.same_length,
                                             input_ids.device)  # [qlen, klen]
        words = self.word_emb(input_ids) * self.emb_scale  # [batch, qlen, d_model]
        weights = self.evaluation_fingerprint() if config.relative_positions else None
        known_keys_values = None  # the memory's keys and values, if this memory brought them (evaluation)
        if weights is not None and memory_len > 0 and isinstance(mems, TransformerXLMemory):
            known_keys_values = mems.known_keys_values(weights)

        if config.relative_positions:
            position_keys = self.relative_position_keys(key_len, words.device, words.dtype, weights)
            hidden = self.drop(words)
        else:  # the strawman: positions 0 .. qlen-1 in every segment, whatever came before
            positions = torch.arange(query_len, device=words.device, dtype=words.dtype)
            hidden = self.drop(words + self.pos_emb(positions))
            if is_plain_causal(query_len, memory_len, config.mem_len, config.same_length):
                allowed = None  # lets the fused kernel use its causal fast path

        hidden_states, attentions, keys_values = [hidden], [], []
        for index, layer in enumerate(self.layers):
            memory = mems[index] if memory_len > 0 else None
            if config.relative_positions:
                known = None if known_keys_values is None else known_keys_values[index]
                hidden, probabilities, layer_keys_values = layer(
                    hidden, position_keys[index], self.r_w_bias, self.r_r_bias, allowed, memory, known,
                    output_attentions)
                keys_values.append(layer_keys_values)  # [batch, heads, klen, d_head] each
            else:
                hidden, probabilities = layer(hidden, allowed, memory, output_attentions)
            hidden_states.append(hidden)  # [batch, qlen, d_model]
            attentions.append(probabilities)  # [batch, heads, qlen, klen] or None

        new_mems = update_memory(hidden_states, mems if memory_len > 0 else None, config.mem_len)
        if new_mems is not None and weights is not None:  # evaluation: keep the keys and values of the new memory
            kept = new_mems[0].size(1)
            new_mems.attach_keys_values([(key[:, :, -kept:], value[:, :, -kept:]) for key, value in keys_values],
                                        weights)
        return ModelOutput(hidden_states=tuple(hidden_states), mems=new_mems,
                           attentions=tuple(attentions) if output_attentions else None)


class TransformerXLLMHeadModel(nn.Module):
    """Transformer-XL with a tied softmax over the vocabulary: the language model."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = TransformerXLModel(config)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        self.lm_head.weight = self.transformer.word_emb.weight  # tie_weight=True
        nn.init.zeros_(self.lm_head.bias)

    def init_mems(self, batch: int) -> list[torch.Tensor] | None:
        """Empty memories to start a text with."""
        return self.transformer.init_mems(batch)

    def forward(self, input_ids: torch.Tensor, mems: list[torch.Tensor] | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        """One segment. ``labels[b, t]`` is the token that *follows* ``input_ids[b, t]`` (authors' target)."""
        output = self.transformer(input_ids, mems=mems, output_attentions=output_attentions)
        logits = self.lm_head(self.drop(output.hidden_states[-1]))  # [batch, qlen, vocab]
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
        """Read a long ``[batch, tokens]`` text ``tgt_len`` tokens at a time, carrying the memory along."""
        segment_len = segment_len or self.config.tgt_len
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
