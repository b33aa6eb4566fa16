"""Transformer-XL saved under the authors' names (qkv_net, r_net, r_w_bias, n_layer, ...) loads into course_lib's."""

from dataclasses import replace

import pytest
import torch

from course_lib.convert.transformer_xl import CONFIG_NAMES, config_fields_from_authors, load_transformer_xl
from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel

CONFIG = TransformerXLConfig(vocab_size=30, n_layers=2, n_heads=2, dim=8, head_dim=3, hidden_dim=16, dropout=0.0,
                             segment_len=4, mem_len=4)


def authors_layout(model: TransformerXLLMHeadModel) -> dict[str, torch.Tensor]:
    """The model's weights under the authors' names, written out by hand (the inverse of the key table)."""
    body = model.transformer
    state = {"lm_head.weight": body.token_embedding.weight, "lm_head.bias": model.lm_head.bias}
    if model.config.relative_positions:
        state |= {"transformer.r_w_bias": body.u, "transformer.r_r_bias": body.v}
    for i, block in enumerate(body.blocks):
        attention, feed_forward = f"transformer.layers.{i}.attention.", f"transformer.layers.{i}.feed_forward."
        query, key, value = block.attn.query.weight, block.attn.key.weight, block.attn.value.weight
        if model.config.relative_positions:
            state[attention + "qkv_net.weight"] = torch.cat([query, key, value])
            state[attention + "r_net.weight"] = block.attn.position.weight
        else:
            state[attention + "q_net.weight"] = query
            state[attention + "kv_net.weight"] = torch.cat([key, value])
        state |= {attention + "o_net.weight": block.attn.output.weight,
                  attention + "layer_norm.weight": block.ln_1.weight, attention + "layer_norm.bias": block.ln_1.bias,
                  feed_forward + "core.0.weight": block.feed_forward.expand.weight,
                  feed_forward + "core.0.bias": block.feed_forward.expand.bias,
                  feed_forward + "core.3.weight": block.feed_forward.project.weight,
                  feed_forward + "core.3.bias": block.feed_forward.project.bias,
                  feed_forward + "layer_norm.weight": block.ln_2.weight,
                  feed_forward + "layer_norm.bias": block.ln_2.bias}
    return {name: tensor.detach().clone() for name, tensor in state.items()}


@pytest.mark.parametrize("relative", [True, False])
def test_authors_layout_loads_to_the_same_model(relative):
    config = replace(CONFIG, relative_positions=relative)
    torch.manual_seed(0)
    original = TransformerXLLMHeadModel(config).eval()
    torch.manual_seed(1)
    loaded = load_transformer_xl(authors_layout(original), config).eval()
    for (name, tensor), (_, expected) in zip(loaded.state_dict().items(), original.state_dict().items()):
        assert torch.equal(tensor, expected), name
    tokens = torch.randint(30, (2, 8))
    torch.testing.assert_close(loaded.forward_in_segments(tokens).logits, original.forward_in_segments(tokens).logits)


def test_a_missing_or_extra_key_or_a_wrong_shape_is_named():
    torch.manual_seed(0)
    state = authors_layout(TransformerXLLMHeadModel(CONFIG))
    with pytest.raises(ValueError, match="missing 1 key.*r_net"):
        load_transformer_xl({k: v for k, v in state.items() if k != "transformer.layers.1.attention.r_net.weight"},
                            CONFIG)
    with pytest.raises(ValueError, match="unexpected key.*pos_emb"):
        load_transformer_xl(state | {"transformer.pos_emb.inv_freq": torch.ones(4)}, CONFIG)
    with pytest.raises(ValueError, match="shape mismatch.*qkv_net"):
        load_transformer_xl(state | {"transformer.layers.0.attention.qkv_net.weight": torch.ones(12, 8)}, CONFIG)


def test_config_names_are_renamed_and_the_rest_kept():
    authors = {"vocab_size": 30, "n_layer": 2, "n_head": 2, "d_model": 8, "d_head": 3, "d_inner": 16, "dropatt": 0.1,
               "pre_lnorm": True, "tgt_len": 4, "mem_len": 4, "clamp_len": 5, "same_length": False}
    fields = config_fields_from_authors(authors)
    assert set(fields) == {"vocab_size", "n_layers", "n_heads", "dim", "head_dim", "hidden_dim", "attn_dropout",
                           "pre_norm", "segment_len", "mem_len", "max_distance", "same_length"}
    assert set(CONFIG_NAMES.values()) <= set(authors)  # every authors' name of the table was exercised
    config = TransformerXLConfig(**fields)
    assert (config.n_layers, config.dim, config.attn_dropout, config.pre_norm, config.segment_len,
            config.max_distance) == (2, 8, 0.1, True, 4, 5)
