"""Hugging Face ``LlamaForCausalLM`` (SmolLM2's architecture on the Hub) <-> course_lib ``SmolLM``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from course_lib.convert.common import Rule, expand_rules, load_with_rules
from course_lib.models.smollm import SmolLM, SmolLMConfig

# course_lib key                                 Hugging Face key
LLAMA_KEYS = [
    Rule("model.token_embedding.weight",          "model.embed_tokens.weight"),
    Rule("model.blocks.{i}.norm_1.weight",        "model.layers.{i}.input_layernorm.weight"),
    Rule("model.blocks.{i}.attn.query.weight",    "model.layers.{i}.self_attn.q_proj.weight"),
    Rule("model.blocks.{i}.attn.key.weight",      "model.layers.{i}.self_attn.k_proj.weight"),
    Rule("model.blocks.{i}.attn.value.weight",    "model.layers.{i}.self_attn.v_proj.weight"),
    Rule("model.blocks.{i}.attn.output.weight",   "model.layers.{i}.self_attn.o_proj.weight"),
    Rule("model.blocks.{i}.norm_2.weight",        "model.layers.{i}.post_attention_layernorm.weight"),
    Rule("model.blocks.{i}.feed_forward.gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    Rule("model.blocks.{i}.feed_forward.up.weight",   "model.layers.{i}.mlp.up_proj.weight"),
    Rule("model.blocks.{i}.feed_forward.down.weight", "model.layers.{i}.mlp.down_proj.weight"),
    Rule("model.final_norm.weight",               "model.norm.weight"),
]
# The LM head is the token embedding (tied); a checkpoint may carry the copy.
LLAMA_TIED = {"lm_head.weight": "model.embed_tokens.weight"}


def smollm_config_from_hf(hf_config: Mapping) -> SmolLMConfig:
    """A ``SmolLMConfig`` from a Hugging Face Llama ``config.json`` dict (or ``config.to_dict()``)."""
    for flag in ("attention_bias", "mlp_bias"):
        if hf_config.get(flag, False):
            raise ValueError(f"course_lib's SmolLM has no biases, but the config sets {flag}=True")
    if not hf_config.get("tie_word_embeddings", True):
        raise ValueError("course_lib's SmolLM ties the LM head to the embedding; this config does not")
    rope = hf_config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default" or hf_config.get("rope_scaling"):
        raise ValueError("course_lib's SmolLM implements plain rotary positions, not rope scaling")
    heads = hf_config["num_attention_heads"]
    return SmolLMConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["max_position_embeddings"],
        dim=hf_config["hidden_size"],
        n_layers=hf_config["num_hidden_layers"],
        n_heads=heads,
        n_kv_heads=hf_config.get("num_key_value_heads") or heads,
        hidden_dim=hf_config["intermediate_size"],
        norm_eps=hf_config["rms_norm_eps"],
        rope_base=rope.get("rope_theta", hf_config.get("rope_theta", 10000.0)),
    )


def load_llama(state_dict: Mapping[str, torch.Tensor], config: SmolLMConfig, model: SmolLM | None = None) -> SmolLM:
    """A course_lib ``SmolLM`` holding the weights of a Hugging Face Llama state dict (ValueError on any mismatch)."""
    model = SmolLM(config) if model is None else model
    return load_with_rules(model, state_dict, expand_rules(LLAMA_KEYS, config.n_layers), tied=LLAMA_TIED)


def to_hf_llama_state_dict(model: SmolLM) -> dict[str, torch.Tensor]:
    """The same table read backwards: course_lib's weights under Hugging Face's names (for parity tests)."""
    ours = model.state_dict()
    theirs = {rule.theirs: ours[rule.ours] for rule in expand_rules(LLAMA_KEYS, model.config.n_layers)}
    theirs["lm_head.weight"] = theirs["model.embed_tokens.weight"]
    return theirs


def hf_llama_config_kwargs(config: SmolLMConfig) -> dict:
    """Keyword arguments of ``transformers.LlamaConfig`` describing the same model (parity tests, benchmarks)."""
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
        max_position_embeddings=config.context_length, rms_norm_eps=config.norm_eps, rope_theta=config.rope_base,
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    )
