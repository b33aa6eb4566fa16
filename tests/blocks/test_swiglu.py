"""SwiGLU feed-forward (Shazeer 2020, Eq. 6) and grouped-query attention (Ainslie et al. 2023) as an option."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.blocks.attention import MultiHeadAttention
from course_lib.blocks.feed_forward import SwiGLUFeedForward
from course_lib.blocks.kv_cache import KeyValueCache
from course_lib.blocks.rotary import RotaryEmbedding, apply_rotary


def test_swiglu_is_equation_6_by_hand():
    torch.manual_seed(0)
    ffn = SwiGLUFeedForward(8, 12)
    x = torch.randn(2, 3, 8)  # [batch, tokens, dim]
    W, V, W2 = ffn.gate.weight.T, ffn.up.weight.T, ffn.down.weight.T
    swish = (x @ W) * torch.sigmoid(x @ W)  # Swish_1(z) = z sigmoid(z)
    torch.testing.assert_close(ffn(x), (swish * (x @ V)) @ W2)
    assert sorted(name for name, _ in ffn.named_parameters()) == ["down.weight", "gate.weight", "up.weight"]


def test_grouped_query_attention_shares_each_key_value_head_with_a_group():
    torch.manual_seed(0)
    attn = MultiHeadAttention(12, n_heads=6, bias=False, n_kv_heads=2).eval()  # groups of 3 query heads
    assert attn.key.weight.shape == (4, 12) and attn.value.weight.shape == (4, 12)  # 2 kv heads of size 2
    x = torch.randn(2, 5, 12)
    out, weights = attn(x, is_causal=True, output_attentions=True)
    # By hand: query head h reads key/value head h // 3.
    q = attn.query(x).view(2, 5, 6, 2).transpose(1, 2)
    k = attn.key(x).view(2, 5, 2, 2).transpose(1, 2)
    v = attn.value(x).view(2, 5, 2, 2).transpose(1, 2)
    heads = []
    for h in range(6):
        scores = q[:, h] @ k[:, h // 3].transpose(-1, -2) / 2**0.5
        scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ v[:, h // 3])
    torch.testing.assert_close(out, attn.output(torch.cat(heads, dim=-1)))
    assert weights.shape == (2, 6, 5, 5)  # [batch, heads, query, key], as bertviz wants
    fused, _ = attn(x, is_causal=True)
    torch.testing.assert_close(fused, out)


def test_default_attention_is_unchanged_and_bad_groups_are_refused():
    attn = MultiHeadAttention(8, n_heads=4)
    assert attn.n_kv_heads == 4 and attn.key.weight.shape == (8, 8)
    assert list(attn.state_dict()) == ["query.weight", "query.bias", "key.weight", "key.bias", "value.weight",
                                       "value.bias", "output.weight", "output.bias"]
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        MultiHeadAttention(8, n_heads=4, n_kv_heads=3)


def test_rotary_and_cache_give_the_same_output_token_by_token():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, n_heads=4, bias=False, n_kv_heads=2).eval()
    rope = RotaryEmbedding(4, base=100.0)
    x = torch.randn(1, 6, 16)
    whole, _ = attn(x, is_causal=True, rotary=rope(torch.arange(6)))
    cache, steps = KeyValueCache(), []
    for t in range(6):
        step, _ = attn(x[:, t : t + 1], is_causal=True, rotary=rope(torch.tensor([t])), cache=cache)
        steps.append(step)
    assert len(cache) == 6 and cache.key.shape == (1, 2, 6, 4)  # the cache holds the 2 kv heads only
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    q = attn.split_heads(attn.query(x))
    torch.testing.assert_close(apply_rotary(q, *rope(torch.arange(6)))[:, :, 0], q[:, :, 0])  # position 0: no turn
    assert F.mse_loss(whole, attn(x, is_causal=True)[0]) > 1e-6  # positions do change the output
