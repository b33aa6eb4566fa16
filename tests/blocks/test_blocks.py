"""Masks, attention, feed-forward, embeddings and transformer blocks against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.blocks.attention import MultiHeadAttention, scaled_dot_product_attention
from course_lib.blocks.embeddings import (
    LearnedPositionEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEmbedding,
    TokenEmbedding,
    sinusoidal_table,
)
from course_lib.blocks.feed_forward import FeedForward
from course_lib.blocks.masks import additive_mask, causal_mask, combine_masks, padding_mask
from course_lib.blocks.transformer_block import TransformerBlock

TOLERANCE = dict(atol=1e-5, rtol=1e-5)


# --- masks ----------------------------------------------------------------------------------------------------------


def test_causal_mask_is_lower_triangular():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3), expected)
    # Two new queries after three cached keys see everything up to themselves.
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="n_query <= n_key"):
        causal_mask(4, 3)


def test_padding_mask_hides_padding_keys_and_checks_input():
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="rank 2"):
        padding_mask(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="only hold 0.0"):
        padding_mask(torch.tensor([[1.0, 0.5]]))


def test_combine_and_additive_masks():
    a = torch.tensor([True, True, False])
    b = torch.tensor([True, False, True])
    assert combine_masks(None, None) is None
    assert torch.equal(combine_masks(a, None, b), torch.tensor([True, False, False]))
    bias = additive_mask(a, torch.float32)
    assert bias[:2].tolist() == [0.0, 0.0] and bias[2] == torch.finfo(torch.float32).min


# --- attention ------------------------------------------------------------------------------------------------------


def random_qkv(batch=2, heads=3, queries=5, keys=5, head_dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, queries, head_dim, generator=generator)
    k = torch.randn(batch, heads, keys, head_dim, generator=generator)
    v = torch.randn(batch, heads, keys, head_dim, generator=generator)
    return q, k, v


def test_attention_matches_equation_1_by_hand():
    q, k, v = random_qkv()
    output, weights = scaled_dot_product_attention(q, k, v, need_weights=True)
    by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(weights, by_hand, **TOLERANCE)
    torch.testing.assert_close(output, by_hand @ v, **TOLERANCE)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("with_padding", [False, True])
def test_explicit_and_fused_attention_agree(is_causal, with_padding):
    q, k, v = random_qkv(seed=1)
    mask = padding_mask(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])) if with_padding else None
    explicit, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, need_weights=True)
    fused, none = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)
    assert none is None and weights.shape == (2, 3, 5, 5)
    torch.testing.assert_close(explicit, fused, **TOLERANCE)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5), **TOLERANCE)
    if is_causal:
        assert torch.all(weights.triu(diagonal=1) == 0), "a query must not see keys to its right"
    if with_padding:
        assert torch.all(weights[0, :, :, 3:] == 0), "padding keys must get zero weight"


def test_causal_attention_with_fewer_queries_than_keys():
    q, k, v = random_qkv(queries=2, keys=5, seed=2)
    explicit, weights = scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    fused, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit, fused, **TOLERANCE)
    assert torch.all(weights[:, :, 0, 4] == 0) and torch.all(weights[:, :, 0, 3] > 0)


def test_fully_masked_row_is_uniform_not_nan():
    q, k, v = random_qkv(batch=1, seed=3)
    mask = torch.zeros(1, 1, 1, 5, dtype=torch.bool)
    explicit, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    fused, _ = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(weights, torch.full_like(weights, 0.2), **TOLERANCE)
    assert not torch.isnan(fused).any()
    torch.testing.assert_close(explicit, fused, **TOLERANCE)


def test_multi_head_attention_is_equations_4_and_5():
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=12, n_heads=3).eval()
    x = torch.randn(2, 6, 12)
    output, weights = attention(x, output_attentions=True)
    assert output.shape == (2, 6, 12) and weights.shape == (2, 3, 6, 6)
    heads = []
    for h in range(3):  # each head uses its own 4 columns of W^Q, W^K, W^V
        cols = slice(4 * h, 4 * h + 4)
        q = x @ attention.query.weight[cols].T + attention.query.bias[cols]
        k = x @ attention.key.weight[cols].T + attention.key.bias[cols]
        v = x @ attention.value.weight[cols].T + attention.value.bias[cols]
        heads.append(torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1) @ v)
    expected = attention.output(torch.cat(heads, dim=-1))
    torch.testing.assert_close(output, expected, **TOLERANCE)
    fused, none = attention(x)
    assert none is None
    torch.testing.assert_close(fused, expected, **TOLERANCE)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(dim=10, n_heads=3)


# --- feed-forward and embeddings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("approximate", [False, True])
def test_feed_forward_is_equation_2_with_gelu(approximate):
    torch.manual_seed(0)
    ff = FeedForward(dim=8, hidden_dim=32, approximate_gelu=approximate).eval()
    x = torch.randn(2, 3, 8)
    hidden = x @ ff.expand.weight.T + ff.expand.bias
    if approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        hidden = 0.5 * hidden * (1 + torch.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
    else:  # x * Phi(x)
        hidden = hidden * 0.5 * (1 + torch.erf(hidden / math.sqrt(2)))
    torch.testing.assert_close(ff(x), hidden @ ff.project.weight.T + ff.project.bias, **TOLERANCE)


def test_token_embedding_rejects_bad_ids():
    embedding = TokenEmbedding(10, 4)
    assert embedding(torch.tensor([[0, 9]])).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="integer token ids"):
        embedding(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"rank 2"):
        embedding(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"id 10, outside the vocabulary \[0, 10\)"):
        embedding(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match=r"id -1"):
        embedding(torch.tensor([[-1, 3]]))


def test_position_and_segment_embeddings():
    learned = LearnedPositionEmbedding(6, 4)
    torch.testing.assert_close(learned(3, offset=2)[0], learned.weight[2:5])
    with pytest.raises(ValueError, match="longer than the context of 6 positions"):
        learned(7)
    segment = SegmentEmbedding(2, 4)
    assert segment(torch.tensor([[0, 1]])).shape == (1, 2, 4)
    with pytest.raises(ValueError, match=r"token_type_ids holds id 2"):
        segment(torch.tensor([[0, 2]]))


def test_sinusoidal_positions_follow_section_3_5():
    table = sinusoidal_table(50, 8)
    for pos, i in [(0, 0), (7, 1), (49, 3)]:
        angle = pos / 10000 ** (2 * i / 8)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    embedding = SinusoidalPositionEmbedding(50, 8)
    assert embedding(4, offset=1).shape == (1, 4, 8) and not list(embedding.parameters())
    with pytest.raises(ValueError, match="longer than the 50 positions"):
        embedding(51)


# --- transformer block ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-LN", "pre-LN"])
def test_block_wires_residuals_and_layer_norms(pre_norm):
    torch.manual_seed(0)
    block = TransformerBlock(dim=8, n_heads=2, hidden_dim=16, pre_norm=pre_norm).eval()
    x = torch.randn(2, 5, 8)
    out, weights = block(x, output_attentions=True)
    attend = lambda h: block.attn(h)[0]  # noqa: E731
    if pre_norm:  # x + Sublayer(LayerNorm(x))
        h = x + attend(block.ln_1(x))
        expected = h + block.feed_forward(block.ln_2(h))
    else:  # LayerNorm(x + Sublayer(x))
        h = block.ln_1(x + attend(x))
        expected = block.ln_2(h + block.feed_forward(h))
    torch.testing.assert_close(out, expected, **TOLERANCE)
    assert weights.shape == (2, 2, 5, 5)


def test_causal_block_does_not_look_right():
    torch.manual_seed(0)
    block = TransformerBlock(dim=8, n_heads=2, hidden_dim=16, pre_norm=True).eval()
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[0, 4:] = torch.randn(2, 8)
    before, _ = block(x, is_causal=True)
    after, _ = block(changed, is_causal=True)
    torch.testing.assert_close(before[0, :4], after[0, :4], **TOLERANCE)
    assert not torch.allclose(before[0, 4:], after[0, 4:])
    bidirectional_before, _ = block(x)
    bidirectional_after, _ = block(changed)
    assert not torch.allclose(bidirectional_before[0, :4], bidirectional_after[0, :4])


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=8, n_heads=2, attn_dropout=0.5)
    x = torch.randn(1, 4, 8)
    attention.eval()
    a, _ = attention(x)
    b, _ = attention(x)
    torch.testing.assert_close(a, b)
    attention.train()
    c, _ = attention(x)
    assert not torch.allclose(a, c)
