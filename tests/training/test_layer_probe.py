"""Probes on cached layers (notebook 03): the ways of reading layers, norms, contributions, bootstrap F1."""

import pytest
import torch

from course_lib.training.layer_probe import (
    LayerProbe,
    bootstrap_f1,
    f1_score,
    layer_norms,
    mix_contributions,
    train_layer_probe,
)
from course_lib.training.metrics import binary_metrics


def toy_features(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 3, 8, generator=generator)
    labels = (features[:, 2, 0] > 0).long()          # only layer 2 carries the label
    return features, labels


def test_layer_reads_one_layer_and_half():
    features, _ = toy_features()
    probe = LayerProbe(3, 8, how="layer", layer=1, half="backward")
    assert probe.linear.in_features == 4
    with torch.no_grad():
        expected = probe.linear(features[:, 1, 4:])
        assert torch.allclose(probe(features), expected)


def test_equal_keeps_the_weights_fixed_and_mix_learns_them():
    features, labels = toy_features()
    equal, _ = train_layer_probe((features, labels), features, epochs=3, lr=0.1, batch_size=16, how="equal")
    assert torch.allclose(equal.mix.normalized_weights(), torch.full((3,), 1 / 3))
    mix, predictions = train_layer_probe((features, labels), features, epochs=30, lr=0.1, batch_size=16)
    assert int(mix.mix.normalized_weights().argmax()) == 2
    assert predictions.shape == labels.shape


def test_bad_options_raise():
    with pytest.raises(ValueError):
        LayerProbe(3, 8, how="best")
    with pytest.raises(ValueError):
        LayerProbe(3, 8, half="left")


def test_norms_and_contributions():
    features = torch.zeros(5, 2, 4)
    features[:, 0, 0], features[:, 1, 0] = 1.0, 3.0
    norms = layer_norms(features)
    assert torch.allclose(norms, torch.tensor([1.0, 3.0]))
    shares = mix_contributions(torch.tensor([0.75, 0.25]), norms)
    assert torch.allclose(shares, torch.tensor([0.5, 0.5]))


def test_f1_matches_binary_metrics_and_bootstrap_is_paired():
    labels = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    predicted = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0])
    assert f1_score(labels, predicted).item() == pytest.approx(binary_metrics(labels, predicted).f1)
    assert f1_score(torch.zeros(4), torch.zeros(4)).item() == 0.0
    samples = bootstrap_f1(labels, {"a": predicted, "b": predicted}, resamples=50, seed=1)
    assert samples["a"].shape == (50,)
    assert torch.equal(samples["a"], samples["b"])
    again = bootstrap_f1(labels, {"a": predicted}, resamples=50, seed=1)
    assert torch.equal(again["a"], samples["a"])


def test_group_gap_and_permutation_reference():
    from course_lib.training.layer_probe import group_gap, permutation_gaps

    vectors = torch.tensor([[[1.0, 0.0]], [[1.0, 0.1]], [[0.0, 1.0]], [[0.1, 1.0]]])   # [4 uses, 1 layer, 2]
    first = torch.tensor([True, True, False, False])
    gap = group_gap(vectors, first)
    assert gap.shape == (1,) and gap.item() > 0.8
    splits = permutation_gaps(vectors, 2)
    assert splits.shape == (6, 1)                                    # C(4, 2) splits, the real one among them
    assert torch.isclose(splits.max(), gap[0])
    assert (splits < gap).sum() == 4                                 # only the split and its mirror reach it
