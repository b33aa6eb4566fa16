"""Rotary position embeddings (Su et al. 2021): rotations that make q.k depend only on the relative position."""

import pytest
import torch

from course_lib.blocks.rotary import RotaryEmbedding, apply_rotary, rotate_half


def rotated(x: torch.Tensor, position: int, rope: RotaryEmbedding) -> torch.Tensor:
    """``x [head_dim]`` rotated as a token at ``position``."""
    cos, sin = rope(torch.tensor([position]))  # [1, 1, 1, head_dim]
    return apply_rotary(x[None, None, None, :], cos, sin)[0, 0, 0]


def test_frequencies_are_equation_15():
    rope = RotaryEmbedding(8, base=100000.0)
    expected = torch.tensor([100000.0 ** (-2 * i / 8) for i in range(4)])
    torch.testing.assert_close(rope.frequencies(), expected)


def test_rotation_is_equation_34_in_the_half_split_layout():
    """Pair i = (x_i, x_{i+d/2}) turned by angle m theta_i: (a cos - b sin, a sin + b cos)."""
    rope = RotaryEmbedding(6, base=10.0)
    x, m = torch.randn(6), 7
    theta = rope.frequencies()
    a, b = x[:3], x[3:]
    angle = m * theta
    expected = torch.cat([a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()])
    torch.testing.assert_close(rotated(x, m, rope), expected)
    torch.testing.assert_close(rotate_half(torch.arange(4.0)), torch.tensor([-2.0, -3.0, 0.0, 1.0]))


@pytest.mark.parametrize("base", [10000.0, 100000.0])
def test_query_key_product_depends_only_on_the_relative_position(base):
    torch.manual_seed(0)
    rope = RotaryEmbedding(64, base=base)
    query, key = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    for offset in (0, 3, 17):
        reference = rotated(query, 5, rope) @ rotated(key, 2, rope)  # distance 3
        shifted = rotated(query, 5 + 100 * offset, rope) @ rotated(key, 2 + 100 * offset, rope)
        torch.testing.assert_close(shifted, reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(rotated(query, 6, rope) @ rotated(key, 2, rope), reference, atol=1e-3)


def test_rotation_preserves_the_norm_and_position_zero_is_the_identity():
    rope = RotaryEmbedding(16)
    x = torch.randn(3, 2, 10, 16)  # [batch, heads, tokens, head_dim]
    cos, sin = rope(torch.arange(10).expand(3, 10))  # [batch, 1, tokens, head_dim]
    assert cos.shape == (3, 1, 10, 16)
    out = apply_rotary(x, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0])


def test_odd_head_size_is_refused():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
