"""Training until the validation loss stops improving, and choosing the rate on the validation split."""

import pytest
import torch
from torch import nn

from course_lib.models.outputs import ModelOutput
from course_lib.training.early_stopping import choose_rate, fit_until_plateau
from course_lib.training.loop import classifier_report
from course_lib.transfer.features import feature_batches


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, features):
        return ModelOutput(logits=self.linear(features))


def toy(n, seed):
    """Two classes apart on the first feature, with label noise, so the validation loss has a minimum."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=generator)
    features = torch.randn(n, 4, generator=generator) + 1.5 * labels[:, None] * torch.tensor([1.0, 0, 0, 0])
    flip = torch.rand(n, generator=generator) < 0.15
    return features, torch.where(flip, 1 - labels, labels)


def make_model():
    torch.manual_seed(0)
    return Linear()


def test_fit_until_plateau_keeps_the_best_epoch_and_stops_after_patience():
    train, valid = feature_batches(*toy(64, 0), batch_size=8, shuffle=True), feature_batches(*toy(64, 1), 64)
    model = make_model()
    history, plateau = fit_until_plateau(model, train, valid, lr=0.5, max_epochs=40, patience=2)
    curve = plateau.curve
    assert plateau.valid_loss == min(curve) and curve[plateau.best_epoch - 1] == plateau.valid_loss
    assert len(curve) == len(history.epochs) == len(history.epoch_ends)
    assert len(curve) == 40 or len(curve) - plateau.best_epoch == 2, "stops exactly `patience` epochs after the best"
    assert classifier_report(model, valid)["loss"] == pytest.approx(plateau.valid_loss, abs=1e-6), \
        "the model returned holds the weights of the best epoch"
    assert [e["epoch"] for e in history.epochs] == list(range(1, len(curve) + 1))


def test_choose_rate_keeps_the_rate_of_lowest_validation_loss():
    train, valid = feature_batches(*toy(64, 0), batch_size=8, shuffle=True), feature_batches(*toy(64, 1), 64)
    model, _, plateau, plateaus = choose_rate(make_model, train, valid, lrs=(1e-4, 0.1), max_epochs=10,
                                              patience=2)
    assert set(plateaus) == {1e-4, 0.1}
    assert plateau.lr == min(plateaus, key=lambda lr: plateaus[lr].valid_loss) == 0.1
    assert classifier_report(model, valid)["loss"] == pytest.approx(plateau.valid_loss, abs=1e-6)
    with pytest.raises(ValueError):
        choose_rate(make_model, train, valid, lrs=())
    with pytest.raises(ValueError):
        fit_until_plateau(make_model(), train, valid, lr=0.1, patience=0)
