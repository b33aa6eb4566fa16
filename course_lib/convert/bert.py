"""Hugging Face ``bert`` checkpoints (BertModel, BertForPreTraining, BertForMaskedLM, ...ForSequenceClassification)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from course_lib.convert.common import Rule, expand_rules, load_with_rules, rename_legacy_keys
from course_lib.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)

# The encoder. BERT blocks are post-LN: "attention.output.LayerNorm" is ln_1, "output.LayerNorm" is ln_2.
# course_lib key                      Hugging Face key
BERT_BODY_KEYS = [
    Rule("embeddings.token.weight",      "embeddings.word_embeddings.weight"),
    Rule("embeddings.position.weight",   "embeddings.position_embeddings.weight"),
    Rule("embeddings.segment.weight",    "embeddings.token_type_embeddings.weight"),
    Rule("embeddings.layer_norm.weight", "embeddings.LayerNorm.weight"),
    Rule("embeddings.layer_norm.bias",   "embeddings.LayerNorm.bias"),
    Rule("blocks.{i}.attn.query.weight", "encoder.layer.{i}.attention.self.query.weight"),
    Rule("blocks.{i}.attn.query.bias",   "encoder.layer.{i}.attention.self.query.bias"),
    Rule("blocks.{i}.attn.key.weight",   "encoder.layer.{i}.attention.self.key.weight"),
    Rule("blocks.{i}.attn.key.bias",     "encoder.layer.{i}.attention.self.key.bias"),
    Rule("blocks.{i}.attn.value.weight", "encoder.layer.{i}.attention.self.value.weight"),
    Rule("blocks.{i}.attn.value.bias",   "encoder.layer.{i}.attention.self.value.bias"),
    Rule("blocks.{i}.attn.output.weight", "encoder.layer.{i}.attention.output.dense.weight"),
    Rule("blocks.{i}.attn.output.bias",   "encoder.layer.{i}.attention.output.dense.bias"),
    Rule("blocks.{i}.ln_1.weight",       "encoder.layer.{i}.attention.output.LayerNorm.weight"),
    Rule("blocks.{i}.ln_1.bias",         "encoder.layer.{i}.attention.output.LayerNorm.bias"),
    Rule("blocks.{i}.feed_forward.expand.weight",  "encoder.layer.{i}.intermediate.dense.weight"),
    Rule("blocks.{i}.feed_forward.expand.bias",    "encoder.layer.{i}.intermediate.dense.bias"),
    Rule("blocks.{i}.feed_forward.project.weight", "encoder.layer.{i}.output.dense.weight"),
    Rule("blocks.{i}.feed_forward.project.bias",   "encoder.layer.{i}.output.dense.bias"),
    Rule("blocks.{i}.ln_2.weight",       "encoder.layer.{i}.output.LayerNorm.weight"),
    Rule("blocks.{i}.ln_2.bias",         "encoder.layer.{i}.output.LayerNorm.bias"),
]
BERT_POOLER_KEYS = [
    Rule("pooler.dense.weight", "pooler.dense.weight"),
    Rule("pooler.dense.bias",   "pooler.dense.bias"),
]
# The masked-LM head; its output weight is the (tied) token embedding.
BERT_MLM_KEYS = [
    Rule("mlm.transform.weight",  "cls.predictions.transform.dense.weight"),
    Rule("mlm.transform.bias",    "cls.predictions.transform.dense.bias"),
    Rule("mlm.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
    Rule("mlm.layer_norm.bias",   "cls.predictions.transform.LayerNorm.bias"),
    Rule("mlm.decoder.bias",      "cls.predictions.bias"),
]
BERT_NSP_KEYS = [
    Rule("next_sentence.weight", "cls.seq_relationship.weight"),
    Rule("next_sentence.bias",   "cls.seq_relationship.bias"),
]
BERT_CLASSIFIER_KEYS = [
    Rule("classifier.weight", "classifier.weight"),
    Rule("classifier.bias",   "classifier.bias"),
]
BERT_IGNORED = [r"(bert\.)?embeddings\.position_ids", r"(bert\.)?embeddings\.token_type_ids"]  # index buffers
BERT_TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


def bert_config_from_hf(hf_config: Mapping) -> BertConfig:
    """A ``BertConfig`` from a Hugging Face BERT ``config.json`` dict (or ``config.to_dict()``)."""
    if hf_config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"course_lib's BERT uses exact GELU, not hidden_act={hf_config['hidden_act']!r}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("course_lib's BERT only has absolute (learned) position embeddings")
    return BertConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["max_position_embeddings"],
        dim=hf_config["hidden_size"],
        n_layers=hf_config["num_hidden_layers"],
        n_heads=hf_config["num_attention_heads"],
        hidden_dim=hf_config["intermediate_size"],
        n_segments=hf_config.get("type_vocab_size", 2),
        dropout=hf_config.get("hidden_dropout_prob", 0.1),
        attn_dropout=hf_config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        pad_token_id=hf_config.get("pad_token_id") or 0,
    )


def bert_model_for(state_dict: Mapping[str, torch.Tensor], config: BertConfig) -> nn.Module:
    """The course_lib class whose keys a checkpoint has: pretraining heads, MLM head, classifier or the bare body."""
    keys = set(state_dict)
    if "cls.seq_relationship.weight" in keys:
        return BertForPreTraining(config)
    if "cls.predictions.transform.dense.weight" in keys:
        return BertForMaskedLM(config)
    if "classifier.weight" in keys:
        return BertForSequenceClassification(config, n_classes=state_dict["classifier.weight"].shape[0])
    return BertModel(config, add_pooler=any(key.endswith("pooler.dense.weight") for key in keys))


def bert_rules(model: nn.Module, n_layers: int, theirs_body_prefix: str) -> list[Rule]:
    """The expanded key table for whichever course_lib BERT class ``model`` is."""
    body = model if isinstance(model, BertModel) else model.bert
    ours_body_prefix = "" if isinstance(model, BertModel) else "bert."
    table = BERT_BODY_KEYS + (BERT_POOLER_KEYS if body.pooler is not None else [])
    rules = expand_rules(table, n_layers, ours_body_prefix, theirs_body_prefix)
    if isinstance(model, (BertForPreTraining, BertForMaskedLM)):
        rules += expand_rules(BERT_MLM_KEYS, n_layers)
    if isinstance(model, BertForPreTraining):
        rules += expand_rules(BERT_NSP_KEYS, n_layers)
    if isinstance(model, BertForSequenceClassification):
        rules += expand_rules(BERT_CLASSIFIER_KEYS, n_layers)
    return rules


def load_bert(
    state_dict: Mapping[str, torch.Tensor], config: BertConfig, model: nn.Module | None = None
) -> nn.Module:
    """A course_lib BERT (the class matching the checkpoint's heads, or ``model``) with the checkpoint's weights."""
    theirs = rename_legacy_keys(state_dict)
    model = bert_model_for(theirs, config) if model is None else model
    has_prefix = any(key.startswith("bert.") for key in theirs)
    rules = bert_rules(model, config.n_layers, "bert." if has_prefix else "")
    tied = {copy: source for copy, source in BERT_TIED.items() if has_prefix}
    return load_with_rules(model, theirs, rules, ignored=BERT_IGNORED, tied=tied)
