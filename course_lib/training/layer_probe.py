"""Probing frozen biLM layers (notebook 03): a linear classifier on a mix of cached layers, and how to compare mixes.

Features are cached ``[examples, layers, dim]`` tensors (one vector per layer of a frozen model). A ``LayerProbe``
reads them in one of four ways, the comparisons of ELMo's Sec. 5.1:

- ``"mix"``: the task's learned scalar mix ``gamma * sum_j softmax(w)_j h_j`` (Eq. 1), optionally on layer-normalised
  layers (the paper's Sec. 3.2 option, which makes the weights comparable across layers of different scale);
- ``"equal"``: the plain average of the layers (s_j = 1 / layers fixed, gamma still learned);
- ``"layer"``: one layer only (the top layer is ``layer=-1``), optionally one half of it (forward or backward).

Because the mix has no normalisation by default, s_j alone is confounded with each layer's scale: a layer whose
vectors are three times longer needs a third of the weight to contribute as much. ``layer_norms`` and
``mix_contributions`` give the comparable form ``s_j * ||h_j||``. ``bootstrap_f1`` resamples the test set so that a
ranking can be shown with its spread over test samples as well as over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.scalar_mix import ScalarMix
from course_lib.transfer.features import one_cpu_thread

HOWS = ("mix", "equal", "layer")


class LayerProbe(nn.Module):
    """A way of reading cached layers [n, layers, dim] (mix, equal average or one layer), then a linear layer."""

    def __init__(self, n_layers: int, dim: int, how: str = "mix", layer: int = -1, half: str | None = None,
                 layer_norm: bool = False, n_classes: int = 2) -> None:
        super().__init__()
        if how not in HOWS:
            raise ValueError(f"how must be one of {HOWS}, got {how!r}")
        if half not in (None, "forward", "backward"):
            raise ValueError(f"half must be None, 'forward' or 'backward', got {half!r}")
        if half is not None and dim % 2:
            raise ValueError(f"a half needs an even width, got dim={dim}")
        self.how, self.layer, self.half, self.layer_norm = how, layer, half, layer_norm
        self.mix = ScalarMix(n_layers, do_layer_norm=layer_norm, trainable=how == "mix")
        if how == "equal":
            self.mix.gamma.requires_grad_(True)                      # s fixed at 1 / layers, gamma learned
        self.linear = nn.Linear(dim if half is None else dim // 2, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:   # [n, layers, dim] -> [n, classes]
        if self.half is not None:
            width = features.size(-1) // 2
            features = features[..., :width] if self.half == "forward" else features[..., width:]
        if self.how == "layer":
            chosen = features[:, self.layer]
        else:
            chosen = self.mix(features.transpose(0, 1))                 # layers first, as ScalarMix takes them
        return self.linear(chosen)


def train_layer_probe(train: tuple[torch.Tensor, torch.Tensor], test_features: torch.Tensor, epochs: int, lr: float,
                      batch_size: int, seed: int = 0, **options) -> tuple[LayerProbe, torch.Tensor]:
    """Train a LayerProbe with Adam on cached ``train = (features, labels)``; return it and its test predictions."""
    torch.manual_seed(seed)
    features, labels = train
    probe = LayerProbe(features.size(1), features.size(2), **options)
    optimizer = torch.optim.Adam([p for p in probe.parameters() if p.requires_grad], lr=lr)
    with one_cpu_thread():
        for _ in range(epochs):
            order = torch.randperm(len(labels))
            for first in range(0, len(labels), batch_size):
                rows = order[first:first + batch_size]
                loss = F.cross_entropy(probe(features[rows]), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            predictions = probe(test_features).argmax(-1)
    return probe, predictions


def layer_norms(features: torch.Tensor) -> torch.Tensor:
    """[layers]: the mean Euclidean length of one layer's vectors, over the examples of [n, layers, dim]."""
    return features.norm(dim=-1).mean(0)


def mix_contributions(weights: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Each layer's share of the mixed vector's size, s_j * ||h_j|| normalised to sum to 1 (comparable across layers)."""
    contribution = weights * norms
    return contribution / contribution.sum()


def f1_score(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Positive-class F1 along the last dimension (0 where nothing is predicted or present), batched."""
    labels, predictions = labels.bool(), predictions.bool()
    true_positive = (labels & predictions).sum(-1).float()
    wrong = (labels ^ predictions).sum(-1).float()
    denominator = 2 * true_positive + wrong
    return torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), torch.zeros_like(denominator))


def bootstrap_f1(labels: torch.Tensor, predictions: Mapping[str, torch.Tensor], resamples: int = 1000,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """F1 of every system on the same ``resamples`` bootstrap samples of the test set: name -> [resamples].

    The samples are shared, so differences between two systems are paired (their spread is the spread of the gap).
    """
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(labels), (resamples, len(labels)), generator=generator)   # [resamples, n]
    return {name: f1_score(labels[rows], predicted.to(labels.device)[rows]) for name, predicted in predictions.items()}


def group_gap(vectors: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """[layers]: mean cosine within the two groups minus across them, for vectors [n, layers, dim].

    ``first`` [n] (bool) marks the first group. Positive: uses in one group are closer to each other than to the
    other group's. The comparison of notebook 03's sense demonstrations ("stick", "bear").
    """
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    cosine = torch.einsum("ald,bld->lab", unit, unit)                                   # [layers, n, n]
    same = (first[:, None] == first[None, :]) & ~torch.eye(len(first), dtype=torch.bool)
    across = first[:, None] != first[None, :]
    return cosine[:, same].mean(-1) - cosine[:, across].mean(-1)


def permutation_gaps(vectors: torch.Tensor, n_first: int) -> torch.Tensor:
    """[splits, layers]: ``group_gap`` for every split of the n uses into groups of n_first and n - n_first.

    The reference for a sense gap: if labels meant nothing, the real grouping would be one of these splits.
    """
    from itertools import combinations

    n = len(vectors)
    gaps = []
    for chosen in combinations(range(n), n_first):
        first = torch.zeros(n, dtype=torch.bool)
        first[list(chosen)] = True
        gaps.append(group_gap(vectors, first))
    return torch.stack(gaps)
