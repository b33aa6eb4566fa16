"""Attention with a memory and an additive score bias; relative attention as a subclass that changes only the scores."""

import math

import pytest
import torch

from course_lib.blocks.attention import MultiHeadAttention, scaled_dot_product_attention
from course_lib.blocks.feed_forward import FeedForward
from course_lib.blocks.relative_attention import RelativeMultiHeadAttention, RelativePositionEmbedding, relative_shift
from course_lib.blocks.transformer_block import TransformerBlock
from course_lib.models.transformer_xl_memory import attention_mask_with_memory

TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


@pytest.mark.parametrize("with_mask", [False, True])
def test_bias_is_added_to_the_scaled_scores_on_both_paths(with_mask):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 4, generator=generator) for n in (4, 6, 6))
    bias = torch.randn(2, 3, 4, 6, generator=generator)
    mask = attention_mask_with_memory(4, 2, 2) if with_mask else None  # [4, 6]
    explicit, weights = scaled_dot_product_attention(q, k, v, mask, bias=bias, need_weights=True)
    fused, _ = scaled_dot_product_attention(q, k, v, mask, bias=bias)
    scores = q @ k.transpose(-2, -1) / math.sqrt(4) + bias
    if with_mask:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(weights, scores.softmax(-1), **TOLERANCE)
    torch.testing.assert_close(explicit, fused, **TOLERANCE)


def test_memory_gives_keys_and_values_but_no_queries():
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=8, n_heads=2, head_dim=3, bias=False).eval()
    memory, x = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    output, weights = attention(x, is_causal=True, output_attentions=True, memory=memory)
    assert output.shape == (2, 3, 8) and weights.shape == (2, 2, 3, 8)
    whole, _ = attention(torch.cat([memory, x], 1), is_causal=True)  # the same tokens, all asking queries
    torch.testing.assert_close(output, whole[:, -3:], **TOLERANCE)
    assert attention.query.weight.shape == (6, 8) and attention.output.weight.shape == (8, 6)


def test_relative_attention_overrides_only_the_scores():
    torch.manual_seed(0)
    attention = RelativeMultiHeadAttention(dim=8, n_heads=2, head_dim=4).eval()
    assert isinstance(attention, MultiHeadAttention) and attention.query.bias is None
    memory, x = torch.randn(1, 2, 8), torch.randn(1, 3, 8)
    u, v = torch.randn(2, 4), torch.randn(2, 4)
    R = RelativePositionEmbedding(8)(torch.arange(4.0, -1, -1))  # distances 4 .. 0
    allowed = attention_mask_with_memory(3, 2, 2)
    _, weights = attention(x, allowed, output_attentions=True, memory=memory, positions=R, u=u, v=v)
    q, k = (attention.split_heads(attention.query(x)),
            attention.split_heads(attention.key(torch.cat([memory, x], 1))))  # [1, 2 heads, 3 or 5, 4]
    r = attention.position_keys(R)  # [heads, 5, 4]
    scores = ((q + u[:, None]) @ k.transpose(-1, -2) + relative_shift((q + v[:, None]) @ r.transpose(-1, -2))) / 2.0
    torch.testing.assert_close(weights, scores.masked_fill(~allowed, float("-inf")).softmax(-1), **TOLERANCE)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_block_normalises_the_memory_like_the_segment(pre_norm):
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 16, pre_norm=pre_norm,
                             feed_forward=FeedForward(8, 16, activation="relu", hidden_dropout=0.1)).eval()
    memory, x = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    with_memory, _ = block(x, is_causal=True, memory=memory)
    if pre_norm:  # LayerNorm is per position: normalising [memory; x] is normalising both parts
        whole = torch.cat([memory, x], 1)
        h = whole + block.attn(block.ln_1(whole), is_causal=True)[0]
        expected = (h + block.feed_forward(block.ln_2(h)))[:, -3:]
    else:
        expected = block(torch.cat([memory, x], 1), is_causal=True)[0][:, -3:]
    torch.testing.assert_close(with_memory, expected, **TOLERANCE)
    assert isinstance(block.feed_forward.activation, torch.nn.ReLU)
