"""Feature extraction: run the frozen pretrained body once, then train only a linear classifier on its output.

Because the body is frozen, its output for a message never changes, so it is computed once and cached; training
the head then costs almost nothing. This is the "feature-based approach" of Peters et al. (2018) and Devlin et al.
(2019, Sec. 5.3), where BERT's layers are combined in several ways (``combine_layers``) and fed to a small model.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib.models.outputs import ModelOutput
from course_lib.training.loop import Batch, History, fit, model_inputs

COMBINATIONS = ("last", "second_to_last", "sum_all", "sum_last_four", "concat_last_four")


@torch.no_grad()
def extract_features(body: nn.Module, batches: Iterable[Batch], pooled: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)``: the [CLS] vector of every layer ``[n, layers + 1, dim]``, or the pooled one ``[n, dim]``.

    ``body`` returns a ``ModelOutput`` with ``hidden_states`` (embeddings + every layer) and, for BERT, ``pooled``.
    """
    was_training = body.training
    body.eval()
    device = next(body.parameters()).device
    features, labels = [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = body(**model_inputs(body, batch))
        if pooled:
            features.append(out.pooled.cpu())  # [batch, dim]
        else:
            features.append(torch.stack([h[:, 0] for h in out.hidden_states], dim=1).cpu())  # [batch, layers+1, dim]
        labels.append(batch["labels"].cpu())
    body.train(was_training)
    return torch.cat(features), torch.cat(labels)


@dataclass(frozen=True)
class LayerFeatures:
    """Two readouts of every layer for ``n`` messages, ``[n, layers + 1, dim]`` each, and their ``[n]`` labels."""

    cls: torch.Tensor  # the [CLS] position's vector: what BERT's classifier reads (Devlin et al. 2019, Sec. 4.1)
    mean: torch.Tensor  # the mean over the message's real tokens: what sentence-transformers models are tuned on
    labels: torch.Tensor

    def __getitem__(self, rows) -> LayerFeatures:
        """The same readouts for a subset of the messages (an index list, tensor or slice)."""
        return LayerFeatures(self.cls[rows], self.mean[rows], self.labels[rows])


def mean_over_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average ``[batch, tokens, dim]`` over the positions where ``attention_mask`` is 1 (padding left out)."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [batch, tokens, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # [batch, dim]


@torch.no_grad()
def extract_layer_features(body: nn.Module, batches: Iterable[Batch]) -> LayerFeatures:
    """Run the frozen ``body`` once and keep both readouts (``[CLS]`` and token mean) of every layer."""
    was_training = body.training
    body.eval()
    device = next(body.parameters()).device
    cls, mean, labels = [], [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden_states = body(**model_inputs(body, batch)).hidden_states  # embeddings + every layer
        mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
        cls.append(torch.stack([h[:, 0] for h in hidden_states], dim=1).cpu())  # [batch, layers + 1, dim]
        mean.append(torch.stack([mean_over_tokens(h, mask) for h in hidden_states], dim=1).cpu())
        labels.append(batch["labels"].cpu())
    body.train(was_training)
    return LayerFeatures(torch.cat(cls), torch.cat(mean), torch.cat(labels))


def combine_layers(features: torch.Tensor, how: str) -> torch.Tensor:
    """Turn per-layer vectors ``[n, layers + 1, dim]`` into one vector per example (Devlin et al. 2019, Table 7)."""
    if features.dim() != 3 or features.shape[1] < 5:
        raise ValueError(f"need per-layer features [n, layers + 1 >= 5, dim], got shape {tuple(features.shape)}")
    layers = features[:, 1:]  # the embedding output (index 0) is not a layer
    if how == "last":
        return layers[:, -1]
    if how == "second_to_last":
        return layers[:, -2]
    if how == "sum_all":
        return layers.sum(dim=1)
    if how == "sum_last_four":
        return layers[:, -4:].sum(dim=1)
    if how == "concat_last_four":
        return layers[:, -4:].flatten(1)  # [n, 4 * dim]
    raise ValueError(f"how must be one of {COMBINATIONS}, got {how!r}")


class LinearProbe(nn.Module):
    """One linear layer + softmax (in the loss) on fixed features: the smallest possible task head."""

    def __init__(self, dim: int, n_classes: int = 2):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.linear(features))


def feature_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int = 32, shuffle: bool = False,
                    seed: int = 0) -> DataLoader:
    """Batches ``{"features", "labels"}`` for training or evaluating a probe."""
    if len(features) != len(labels):
        raise ValueError(f"got {len(features)} feature rows but {len(labels)} labels")

    def collate(rows):
        return {"features": torch.stack([r[0] for r in rows]), "labels": torch.stack([r[1] for r in rows])}

    return DataLoader(TensorDataset(features, labels), batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


@contextmanager
def one_cpu_thread():
    """Run tiny tensor ops on one CPU thread: waking a second one per op costs more than it saves, and far more
    (milliseconds per op) when other processes keep the cores busy. The previous thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_probe(features: torch.Tensor, labels: torch.Tensor, epochs: int = 100, lr: float = 1e-2,
                batch_size: int = 32, seed: int = 0) -> tuple[LinearProbe, History]:
    """A ``LinearProbe`` fitted with Adam on fixed features (cheap: the body never runs; one CPU thread is enough)."""
    torch.manual_seed(seed)
    probe = LinearProbe(features.shape[-1], int(labels.max()) + 1)
    batches = feature_batches(features, labels, batch_size, shuffle=True, seed=seed)
    with one_cpu_thread():
        history = fit(probe, batches, optimizer=torch.optim.Adam(probe.parameters(), lr=lr), epochs=epochs,
                      progress=False)
    return probe, history
