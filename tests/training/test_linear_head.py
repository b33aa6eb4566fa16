import pytest
import torch

from course_lib.training.linear_head import LinearHead


def separable(n=80, dim=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=generator) < 0.2).long()              # rare positives, as spam
    features = torch.randn(n, dim, generator=generator) * 5 + 100           # large offset: standardising matters
    features[:, 2] += 40 * labels                                           # one informative coordinate
    return features, labels


def test_learns_a_separable_problem_and_predicts_0_or_1():
    features, labels = separable()
    head = LinearHead(l2=1e-3).fit(features, labels)
    predictions = head.predict(features)
    assert predictions.dtype == torch.long and set(predictions.tolist()) <= {0, 1}
    assert (predictions == labels).float().mean() == 1.0
    assert head.weight[2].abs() == head.weight.abs().max()                 # it reads the informative coordinate


def test_stronger_l2_gives_smaller_weights_and_the_fit_is_deterministic():
    features, labels = separable()
    weak, strong = LinearHead(l2=1e-3).fit(features, labels), LinearHead(l2=10.0).fit(features, labels)
    assert strong.weight.norm() < weak.weight.norm()
    torch.testing.assert_close(LinearHead(l2=1e-3).fit(features, labels).weight, weak.weight)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="fit"):
        LinearHead().predict(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="labels"):
        LinearHead().fit(torch.zeros(3, 2), [0, 1])
    with pytest.raises(ValueError, match="l2"):
        LinearHead(l2=-1.0)
