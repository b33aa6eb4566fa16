"""Hugging Face ``gpt2`` (GPT2LMHeadModel / GPT2Model) -> course_lib ``GPT``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from course_lib.convert.common import Rule, expand_rules, load_with_rules, strip_prefix, third, transposed
from course_lib.models.gpt import GPT, GPTConfig

# course_lib key                                Hugging Face key           conversion
GPT2_KEYS = [
    Rule("transformer.token_embedding.weight",    "wte.weight"),
    Rule("transformer.position_embedding.weight", "wpe.weight"),
    Rule("transformer.blocks.{i}.ln_1.weight",    "h.{i}.ln_1.weight"),
    Rule("transformer.blocks.{i}.ln_1.bias",      "h.{i}.ln_1.bias"),
    Rule("transformer.blocks.{i}.attn.query.weight", "h.{i}.attn.c_attn.weight", third(0)),
    Rule("transformer.blocks.{i}.attn.key.weight",   "h.{i}.attn.c_attn.weight", third(1)),
    Rule("transformer.blocks.{i}.attn.value.weight", "h.{i}.attn.c_attn.weight", third(2)),
    Rule("transformer.blocks.{i}.attn.query.bias",   "h.{i}.attn.c_attn.bias",   third(0)),
    Rule("transformer.blocks.{i}.attn.key.bias",     "h.{i}.attn.c_attn.bias",   third(1)),
    Rule("transformer.blocks.{i}.attn.value.bias",   "h.{i}.attn.c_attn.bias",   third(2)),
    Rule("transformer.blocks.{i}.attn.output.weight", "h.{i}.attn.c_proj.weight", transposed),
    Rule("transformer.blocks.{i}.attn.output.bias",   "h.{i}.attn.c_proj.bias"),
    Rule("transformer.blocks.{i}.ln_2.weight",    "h.{i}.ln_2.weight"),
    Rule("transformer.blocks.{i}.ln_2.bias",      "h.{i}.ln_2.bias"),
    Rule("transformer.blocks.{i}.feed_forward.expand.weight",  "h.{i}.mlp.c_fc.weight", transposed),
    Rule("transformer.blocks.{i}.feed_forward.expand.bias",    "h.{i}.mlp.c_fc.bias"),
    Rule("transformer.blocks.{i}.feed_forward.project.weight", "h.{i}.mlp.c_proj.weight", transposed),
    Rule("transformer.blocks.{i}.feed_forward.project.bias",   "h.{i}.mlp.c_proj.bias"),
    Rule("transformer.ln_f.weight",               "ln_f.weight"),
    Rule("transformer.ln_f.bias",                 "ln_f.bias"),
]
# Old checkpoints also store each layer's causal-mask table; course_lib builds its own.
GPT2_IGNORED = [r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias"]
# The LM head is the token embedding (tied); a checkpoint may carry the copy.
GPT2_TIED = {"lm_head.weight": "wte.weight"}


def gpt2_config_from_hf(hf_config: Mapping) -> GPTConfig:
    """A ``GPTConfig`` from a Hugging Face GPT-2 ``config.json`` dict (or ``config.to_dict()``)."""
    if hf_config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"course_lib's GPT-2 uses tanh-GELU, not {hf_config['activation_function']!r}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf_config.get(flag, False):
            raise ValueError(f"course_lib's GPT-2 does not implement {flag}=True")
    return GPTConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["n_positions"],
        dim=hf_config["n_embd"],
        n_layers=hf_config["n_layer"],
        n_heads=hf_config["n_head"],
        hidden_dim=hf_config.get("n_inner") or 4 * hf_config["n_embd"],
        dropout=hf_config.get("resid_pdrop", 0.1),
        attn_dropout=hf_config.get("attn_pdrop", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        pre_norm=True,
        final_norm=True,
    )


def load_gpt2(state_dict: Mapping[str, torch.Tensor], config: GPTConfig, model: GPT | None = None) -> GPT:
    """A course_lib ``GPT`` holding the weights of a Hugging Face GPT-2 state dict (ValueError on any mismatch)."""
    if not (config.pre_norm and config.final_norm):
        raise ValueError("gpt2 weights need a GPT-2 config: pre_norm=True and final_norm=True")
    model = GPT(config) if model is None else model
    theirs = strip_prefix(state_dict, "transformer.")
    rules = expand_rules(GPT2_KEYS, config.n_layers)
    return load_with_rules(model, theirs, rules, ignored=GPT2_IGNORED, tied=GPT2_TIED)
