"""ScalarMix equals ELMo's Eq. 1 in closed form (the cases of allennlp's own tests)."""

import numpy as np
import pytest
import torch

from course_lib.blocks.scalar_mix import ScalarMix

WEIGHTS = [0.1, 0.2, 0.3]


def _mixture(do_layer_norm: bool = False) -> ScalarMix:
    mixture = ScalarMix(3, do_layer_norm=do_layer_norm)
    with torch.no_grad():
        mixture.layer_weights.copy_(torch.tensor(WEIGHTS))
        mixture.gamma.fill_(0.5)
    return mixture


def test_scalar_mix_equals_closed_form():
    torch.manual_seed(0)
    layers = [torch.randn(3, 4, 5) for _ in range(3)]
    result = _mixture()(layers)
    normed = np.exp(WEIGHTS) / np.sum(np.exp(WEIGHTS))
    expected = 0.5 * sum(normed[k] * layers[k].numpy() for k in range(3))
    np.testing.assert_allclose(result.detach().numpy(), expected, atol=1e-6)


def test_scalar_mix_accepts_one_stacked_tensor():
    torch.manual_seed(0)
    layers = torch.randn(3, 2, 4, 5)  # [layers, batch, tokens, dim]
    mixture = _mixture()
    torch.testing.assert_close(mixture(layers), mixture(list(layers)))


def test_scalar_mix_masked_layer_norm_equals_closed_form():
    torch.manual_seed(0)
    layers = [torch.randn(3, 4, 5) for _ in range(3)]
    mask = np.ones((3, 4), dtype=bool)
    mask[1, 2:] = False  # the second sentence has two tokens
    result = _mixture(do_layer_norm=True)(layers, torch.from_numpy(mask))
    normed = np.exp(WEIGHTS) / np.sum(np.exp(WEIGHTS))
    expected = np.zeros((3, 4, 5))
    for k in range(3):
        kept = layers[k].numpy()[mask]  # statistics over the unmasked tokens only
        expected += normed[k] * (layers[k].numpy() - kept.mean()) / (kept.std() + 1e-12)
    np.testing.assert_allclose(result.detach().numpy(), 0.5 * expected, atol=1e-5)


def test_scalar_mix_weights_and_gamma_learn():
    torch.manual_seed(0)
    mixture = ScalarMix(3)
    layers = [torch.randn(2, 3, 4) * (k + 1) for k in range(3)]
    mixture(layers).pow(2).sum().backward()
    assert mixture.layer_weights.grad.abs().sum() > 0
    assert mixture.gamma.grad.abs() > 0
    torch.testing.assert_close(mixture.normalized_weights().sum(), torch.tensor(1.0))


def test_scalar_mix_bad_input():
    mixture = ScalarMix(3)
    with pytest.raises(ValueError, match="built for 3 layers but got 2"):
        mixture([torch.zeros(1, 2, 3)] * 2)
    with pytest.raises(ValueError, match="same shape"):
        mixture([torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 3, 3)])
    with pytest.raises(ValueError, match="mask shape"):
        mixture([torch.zeros(1, 2, 3)] * 3, mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="initial_weights has 2 values"):
        ScalarMix(3, initial_weights=[0.0, 1.0])
