"""New layers on top of a frozen body, trained on its cached output and chosen on a validation split.

The lecture's variant "freeze every pretrained layer and train only new layers stacked on top": since the body is
frozen, its output for a message never changes, so it is computed once (``extract_features`` or
``extract_layer_features``) and only the new layers train, on those fixed vectors. One linear layer is feature
extraction proper (``LinearProbe``); ``TopLayers`` adds a hidden layer, like the two linear blocks of ULMFiT's
classifier (Howard & Ruder 2018, Sec. 3.3). Training is so cheap that the learning rate and the number of epochs
can be chosen on the validation split (``choose_head``) instead of guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.models.outputs import ModelOutput
from course_lib.training.loop import History, classifier_report, fit

from .features import feature_batches


class TopLayers(nn.Module):
    """Two new layers on fixed features: linear -> ReLU -> dropout -> linear (ULMFiT's head, without batch norm)."""

    def __init__(self, dim: int, hidden: int = 128, n_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        if dim < 1 or hidden < 1 or n_classes < 2:
            raise ValueError(f"need dim >= 1, hidden >= 1 and n_classes >= 2, got {dim}, {hidden}, {n_classes}")
        self.hidden = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        """``features [batch, dim]`` -> ``logits [batch, n_classes]``."""
        return ModelOutput(logits=self.output(self.dropout(torch.relu(self.hidden(features)))))


def train_head(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
               batch_size: int = 32, seed: int = 0,
               evaluate: Callable[[nn.Module], dict[str, float]] | None = None) -> History:
    """Fit ``head`` with Adam on fixed ``features [n, dim]``; the same ``seed`` gives the same run, step for step."""
    torch.manual_seed(seed)  # dropout's draws; the batch order has its own generator
    batches = feature_batches(features, labels, batch_size, shuffle=True, seed=seed)
    return fit(head, batches, optimizer=torch.optim.Adam(head.parameters(), lr=lr), epochs=epochs,
               evaluate=evaluate, progress=False)


@dataclass(frozen=True)
class HeadChoice:
    """The settings that gave the lowest validation loss, and every curve that was compared."""

    lr: float
    epochs: int
    valid_loss: float
    curves: dict[float, list[float]]  # learning rate -> validation loss after each epoch


def choose_head(make_head: Callable[[], nn.Module], train: tuple[torch.Tensor, torch.Tensor],
                valid: tuple[torch.Tensor, torch.Tensor], *, lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
                max_epochs: int = 100, batch_size: int = 32, seed: int = 0) -> tuple[nn.Module, HeadChoice]:
    """Train ``make_head()`` with each rate in ``lrs``, keep the (rate, epochs) of lowest validation loss, retrain it.

    ``train`` and ``valid`` are ``(features, labels)``. Retraining with the same seed for the chosen number of epochs
    reproduces the compared run exactly, so the returned head is the one whose validation loss was measured.
    """
    if not lrs or max_epochs < 1:
        raise ValueError(f"need at least one learning rate and max_epochs >= 1, got {list(lrs)} and {max_epochs}")
    valid_batches = feature_batches(*valid, batch_size=max(len(valid[1]), 1))

    def run(lr: float, epochs: int, evaluate: bool) -> tuple[nn.Module, History]:
        head = make_head()
        report = (lambda m: classifier_report(m, valid_batches)) if evaluate else None
        return head, train_head(head, *train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                evaluate=report)

    curves = {lr: run(lr, max_epochs, evaluate=True)[1].metric("loss") for lr in lrs}
    lr, epoch = min(((lr, e) for lr in lrs for e in range(max_epochs)), key=lambda le: curves[le[0]][le[1]])
    head, _ = run(lr, epoch + 1, evaluate=False)
    return head, HeadChoice(lr=lr, epochs=epoch + 1, valid_loss=curves[lr][epoch], curves=curves)
