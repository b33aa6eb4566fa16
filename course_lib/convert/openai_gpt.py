"""Hugging Face ``openai-gpt`` (OpenAIGPTLMHeadModel / OpenAIGPTModel) -> course_lib ``GPT`` (GPT-1)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from course_lib.convert.common import Rule, expand_rules, load_with_rules, strip_prefix, third, transposed
from course_lib.models.gpt import GPT, GPTConfig

# GPT-1 blocks are post-LN: ln_1 follows the attention's residual sum, ln_2 the feed-forward's; no final LayerNorm.
# course_lib key                                Hugging Face key           conversion
OPENAI_GPT_KEYS = [
    Rule("transformer.token_embedding.weight",    "tokens_embed.weight"),
    Rule("transformer.position_embedding.weight", "positions_embed.weight"),
    Rule("transformer.blocks.{i}.attn.query.weight", "h.{i}.attn.c_attn.weight", third(0)),
    Rule("transformer.blocks.{i}.attn.key.weight",   "h.{i}.attn.c_attn.weight", third(1)),
    Rule("transformer.blocks.{i}.attn.value.weight", "h.{i}.attn.c_attn.weight", third(2)),
    Rule("transformer.blocks.{i}.attn.query.bias",   "h.{i}.attn.c_attn.bias",   third(0)),
    Rule("transformer.blocks.{i}.attn.key.bias",     "h.{i}.attn.c_attn.bias",   third(1)),
    Rule("transformer.blocks.{i}.attn.value.bias",   "h.{i}.attn.c_attn.bias",   third(2)),
    Rule("transformer.blocks.{i}.attn.output.weight", "h.{i}.attn.c_proj.weight", transposed),
    Rule("transformer.blocks.{i}.attn.output.bias",   "h.{i}.attn.c_proj.bias"),
    Rule("transformer.blocks.{i}.ln_1.weight",    "h.{i}.ln_1.weight"),
    Rule("transformer.blocks.{i}.ln_1.bias",      "h.{i}.ln_1.bias"),
    Rule("transformer.blocks.{i}.feed_forward.expand.weight",  "h.{i}.mlp.c_fc.weight", transposed),
    Rule("transformer.blocks.{i}.feed_forward.expand.bias",    "h.{i}.mlp.c_fc.bias"),
    Rule("transformer.blocks.{i}.feed_forward.project.weight", "h.{i}.mlp.c_proj.weight", transposed),
    Rule("transformer.blocks.{i}.feed_forward.project.bias",   "h.{i}.mlp.c_proj.bias"),
    Rule("transformer.blocks.{i}.ln_2.weight",    "h.{i}.ln_2.weight"),
    Rule("transformer.blocks.{i}.ln_2.bias",      "h.{i}.ln_2.bias"),
]
OPENAI_GPT_IGNORED = [r"h\.\d+\.attn\.bias", r"position_ids"]  # causal-mask table and position counter buffers
OPENAI_GPT_TIED = {"lm_head.weight": "tokens_embed.weight"}


def openai_gpt_config_from_hf(hf_config: Mapping) -> GPTConfig:
    """A GPT-1 ``GPTConfig`` from a Hugging Face ``openai-gpt`` ``config.json`` dict (or ``config.to_dict()``)."""
    if hf_config.get("afn", "gelu") != "gelu":  # HF's "gelu" for openai-gpt is the tanh approximation
        raise ValueError(f"course_lib's GPT-1 uses tanh-GELU, not afn={hf_config['afn']!r}")
    return GPTConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["n_positions"],
        dim=hf_config["n_embd"],
        n_layers=hf_config["n_layer"],
        n_heads=hf_config["n_head"],
        dropout=hf_config.get("resid_pdrop", 0.1),
        attn_dropout=hf_config.get("attn_pdrop", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        pre_norm=False,
        final_norm=False,
        scale_residual_init=False,
    )


def load_openai_gpt(state_dict: Mapping[str, torch.Tensor], config: GPTConfig, model: GPT | None = None) -> GPT:
    """A course_lib GPT-1 holding the weights of a Hugging Face ``openai-gpt`` state dict (ValueError on mismatch)."""
    if config.pre_norm or config.final_norm:
        raise ValueError("openai-gpt weights need a GPT-1 config: pre_norm=False and final_norm=False")
    model = GPT(config) if model is None else model
    theirs = strip_prefix(state_dict, "transformer.")
    rules = expand_rules(OPENAI_GPT_KEYS, config.n_layers)
    return load_with_rules(model, theirs, rules, ignored=OPENAI_GPT_IGNORED, tied=OPENAI_GPT_TIED)
