"""Transformer-XL checkpoints saved under the authors' names (the shipped ``data/checkpoints/transformer-xl``).

That layout follows ``mem_transformer.py``: one fused ``qkv_net`` per layer (``q_net`` + ``kv_net`` for absolute
positions), ``r_net``/``o_net``, ``r_w_bias``/``r_r_bias``, and the residual LayerNorms inside the attention and
feed-forward modules. The tables below rename it to course_lib's; ``load_with_rules`` asserts every key and shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from course_lib.convert.common import Rule, expand_rules, load_with_rules
from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel

Tensor = torch.Tensor

# course_lib config field <- the authors' name (fields not listed keep their name: vocab_size, dropout, mem_len, ...)
CONFIG_NAMES = {
    "n_layers": "n_layer",
    "n_heads": "n_head",
    "dim": "d_model",
    "head_dim": "d_head",
    "hidden_dim": "d_inner",
    "attn_dropout": "dropatt",
    "pre_norm": "pre_lnorm",
    "segment_len": "tgt_len",
    "max_distance": "clamp_len",
}


def rows(part: int, parts: int) -> Callable[[Tensor], Tensor]:
    """Cut part ``part`` of ``parts`` out of a fused ``nn.Linear`` weight ``[parts * out, in]`` (rows: q, k, v)."""

    def take(tensor: Tensor) -> Tensor:
        size = tensor.size(0) // parts
        return tensor[part * size:(part + 1) * size]

    take.__name__ = f"rows_{part}_of_{parts}"
    return take


# Every layer; the residual LayerNorms move from inside the sublayers to the TransformerBlock (ln_1, ln_2).
# course_lib key                                       key under the authors' names
XL_LAYER_KEYS = [
    Rule("transformer.blocks.{i}.attn.output.weight",    "transformer.layers.{i}.attention.o_net.weight"),
    Rule("transformer.blocks.{i}.ln_1.weight",           "transformer.layers.{i}.attention.layer_norm.weight"),
    Rule("transformer.blocks.{i}.ln_1.bias",             "transformer.layers.{i}.attention.layer_norm.bias"),
    Rule("transformer.blocks.{i}.feed_forward.expand.weight",  "transformer.layers.{i}.feed_forward.core.0.weight"),
    Rule("transformer.blocks.{i}.feed_forward.expand.bias",    "transformer.layers.{i}.feed_forward.core.0.bias"),
    Rule("transformer.blocks.{i}.feed_forward.project.weight", "transformer.layers.{i}.feed_forward.core.3.weight"),
    Rule("transformer.blocks.{i}.feed_forward.project.bias",   "transformer.layers.{i}.feed_forward.core.3.bias"),
    Rule("transformer.blocks.{i}.ln_2.weight",           "transformer.layers.{i}.feed_forward.layer_norm.weight"),
    Rule("transformer.blocks.{i}.ln_2.bias",             "transformer.layers.{i}.feed_forward.layer_norm.bias"),
]
# Relative attention: W_q, W_kE, W_v in one matrix; W_kR; the biases u and v shared by all layers.
XL_RELATIVE_KEYS = [
    Rule("transformer.blocks.{i}.attn.query.weight",    "transformer.layers.{i}.attention.qkv_net.weight", rows(0, 3)),
    Rule("transformer.blocks.{i}.attn.key.weight",      "transformer.layers.{i}.attention.qkv_net.weight", rows(1, 3)),
    Rule("transformer.blocks.{i}.attn.value.weight",    "transformer.layers.{i}.attention.qkv_net.weight", rows(2, 3)),
    Rule("transformer.blocks.{i}.attn.position.weight", "transformer.layers.{i}.attention.r_net.weight"),
    Rule("transformer.u",                               "transformer.r_w_bias"),
    Rule("transformer.v",                               "transformer.r_r_bias"),
]
# Absolute positions (the authors' MultiHeadAttn): the queries apart, keys and values in one matrix.
XL_ABSOLUTE_KEYS = [
    Rule("transformer.blocks.{i}.attn.query.weight",    "transformer.layers.{i}.attention.q_net.weight"),
    Rule("transformer.blocks.{i}.attn.key.weight",      "transformer.layers.{i}.attention.kv_net.weight", rows(0, 2)),
    Rule("transformer.blocks.{i}.attn.value.weight",    "transformer.layers.{i}.attention.kv_net.weight", rows(1, 2)),
]
# The tied embedding is stored once, under the LM head (safetensors keeps one name per shared tensor).
XL_HEAD_KEYS = [
    Rule("transformer.token_embedding.weight",           "lm_head.weight"),
    Rule("lm_head.bias",                                 "lm_head.bias"),
]
XL_TIED = {"transformer.word_emb.weight": "lm_head.weight"}  # present only if both names were saved


def uses_authors_names(config_fields: Mapping) -> bool:
    """True for a config written under the authors' field names (``n_layer``, ``d_model``, ...)."""
    return any(theirs in config_fields for theirs in CONFIG_NAMES.values())


def config_fields_from_authors(config_fields: Mapping) -> dict:
    """The config dict with the authors' field names replaced by course_lib's (for ``TransformerXLConfig``)."""
    ours_of = {theirs: ours for ours, theirs in CONFIG_NAMES.items()}
    return {ours_of.get(name, name): value for name, value in config_fields.items()}


def load_transformer_xl(state_dict: Mapping[str, Tensor], config: TransformerXLConfig) -> TransformerXLLMHeadModel:
    """A course_lib ``TransformerXLLMHeadModel`` holding a checkpoint saved under the authors' names."""
    attention_keys = XL_RELATIVE_KEYS if config.relative_positions else XL_ABSOLUTE_KEYS
    rules = expand_rules(XL_LAYER_KEYS + attention_keys + XL_HEAD_KEYS, config.n_layers)
    return load_with_rules(TransformerXLLMHeadModel(config), state_dict, rules, tied=XL_TIED)
