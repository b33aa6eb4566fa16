"""A small, readable training loop with tqdm progress bars and a history that plots its own curves.

    history = fit(model, train_batches, optimizer=opt, epochs=3, scheduler=sched,
                  evaluate=lambda m: evaluate_classifier(m, valid_batches).as_dict())
    history.plot()

Losses are pluggable: ``classification_loss`` (cross-entropy on ``labels``) and ``lm_loss`` (next-token
cross-entropy on ``targets``) cover the notebooks; ``penalty`` adds a regulariser such as L2-SP to every step, and
``on_epoch_start`` is where gradual unfreezing thaws the next layer group.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_lib.training.losses import next_token_loss
from course_lib.training.metrics import BinaryMetrics, binary_metrics

Batch = dict[str, torch.Tensor]


def model_inputs(model: torch.nn.Module, batch: Batch) -> Batch:
    """The entries of ``batch`` that ``model.forward`` accepts (e.g. GPT takes no ``token_type_ids``)."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted and k not in ("labels", "targets")}


def classification_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy between the classifier's ``[batch, classes]`` logits and ``batch["labels"]``."""
    return F.cross_entropy(model(**model_inputs(model, batch)).logits, batch["labels"])


def lm_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Next-token cross-entropy: ``[batch, tokens, vocab]`` logits against ``batch["targets"]``."""
    return next_token_loss(model(**model_inputs(model, batch)).logits, batch["targets"])


@dataclass
class History:
    """Per-step loss and learning rate, per-epoch evaluation metrics, and the wall time."""

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    epoch_ends: list[int] = field(default_factory=list)  # how many steps had run when each epoch ended

    def metric(self, name: str) -> list[float]:
        """One evaluation metric, epoch by epoch."""
        return [e[name] for e in self.epochs if name in e]

    def epoch_mean_loss(self) -> list[float]:
        """The mean step loss of each epoch: every training example enters once, whatever mix each batch held."""
        starts = [0] + self.epoch_ends[:-1]
        return [sum(self.loss[a:b]) / (b - a) for a, b in zip(starts, self.epoch_ends) if b > a]

    def plot(self, title: str | None = None, smooth: int = 10):
        """Training loss (raw and smoothed) and the learning rate per step; each evaluation metric per epoch."""
        import matplotlib.pyplot as plt

        names = sorted({k for e in self.epochs for k in e if k != "epoch"})
        fig, axes = plt.subplots(1, 2 + bool(names), figsize=(4.2 * (2 + bool(names)), 3.2))
        steps = range(1, len(self.loss) + 1)
        axes[0].plot(steps, self.loss, alpha=0.3, color="C0", label="per step")
        if len(self.loss) >= smooth:
            kernel = torch.ones(smooth) / smooth
            smoothed = F.conv1d(torch.tensor(self.loss).view(1, 1, -1), kernel.view(1, 1, -1)).flatten()
            axes[0].plot(range(smooth, len(self.loss) + 1), smoothed, color="C0", label=f"mean of {smooth}")
        axes[0].set(xlabel="step", ylabel="training loss", title="loss")
        axes[0].legend()
        axes[1].plot(steps, self.lr, color="C1")
        axes[1].set(xlabel="step", ylabel="learning rate", title="schedule")
        if names:
            for i, name in enumerate(names):
                axes[2].plot([e["epoch"] for e in self.epochs if name in e], self.metric(name), "o-",
                             color=f"C{i + 2}", label=name)
            axes[2].set(xlabel="epoch", title="evaluation")
            axes[2].legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


def fit(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int = 1,
    max_steps: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor] = classification_loss,
    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    clip_grad_norm: float | None = 1.0,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Train for ``epochs`` passes (or ``max_steps`` steps) and return the ``History``.

    Each step: loss (+ ``penalty(model)``), backward, optional gradient clipping, optimizer step, scheduler step.
    Before each epoch ``on_epoch_start(e)`` gets the 0-based epoch index (``GradualUnfreezer.step`` fits as it is);
    after each epoch ``evaluate(model)`` (in eval mode, no gradients) adds its metrics to the history, numbered from 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    history, step, start = History(), 0, time.perf_counter()
    total = epochs * len(batches) if hasattr(batches, "__len__") else None
    if max_steps is not None:
        total = min(total, max_steps) if total is not None else max_steps
    bar = tqdm(total=total, desc=description, disable=not progress, leave=False)
    for epoch in range(1, epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch - 1)  # 0-based, like GradualUnfreezer.step and `for epoch in range(n)`
        model.train()
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = loss_fn(model, batch)
            objective = loss + penalty(model) if penalty is not None else loss
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            history.lr.append(optimizer.param_groups[-1]["lr"])  # the top (head) group: the largest rate
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.loss.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if max_steps is not None and step >= max_steps:
                break
        history.epoch_ends.append(step)
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                history.epochs.append({"epoch": epoch, **evaluate(model)})
        if max_steps is not None and step >= max_steps:
            break
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def predict_logits(model: torch.nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels [n], logits [n, classes])`` over all batches, in eval mode."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, logits = [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(model(**model_inputs(model, batch)).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(labels), torch.cat(logits)


def predict(model: torch.nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, predicted classes)`` over all batches, in eval mode."""
    labels, logits = predict_logits(model, batches, device)
    return labels, logits.argmax(-1)


def evaluate_classifier(model: torch.nn.Module, batches: Iterable[Batch],
                        device: torch.device | str | None = None) -> BinaryMetrics:
    """Accuracy, precision, recall and F1 (positive class 1) of ``model`` on ``batches``."""
    return binary_metrics(*predict(model, batches, device))


def classifier_report(model: torch.nn.Module, batches: Iterable[Batch],
                      device: torch.device | str | None = None) -> dict[str, float]:
    """Mean cross-entropy (``loss``) and accuracy, precision, recall, F1 of ``model`` on ``batches``, in one pass.

    The loss is what a validation curve should show: unlike F1 it moves with every message's confidence, so it is
    smooth on a small split. Fits ``fit(..., evaluate=lambda m: classifier_report(m, valid_batches))``.
    """
    labels, logits = predict_logits(model, batches, device)
    loss = F.cross_entropy(logits, labels).item()
    return {"loss": loss, **binary_metrics(labels, logits.argmax(-1)).as_dict()}
