"""The layer-mixing picture: one bar per task and layer at height s_j, gamma in the legend, refuses bad weights."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from course_lib.blocks.scalar_mix import ScalarMix  # noqa: E402
from course_lib.viz.layer_mix import layer_mix_figure  # noqa: E402
from course_lib.viz.plots import figure_png  # noqa: E402


def test_bars_show_each_tasks_softmax_weights_and_gamma():
    mix = ScalarMix(3, initial_weights=[1.0, 0.0, -1.0])
    with torch.no_grad():
        mix.gamma.fill_(0.5)
    mixes = {"spam": (mix.normalized_weights().detach(), mix.gamma.item()), "punctuation": ([0.1, 0.2, 0.7], 2.0)}
    fig = layer_mix_figure(mixes, ["token", "LSTM 1", "LSTM 2"])
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    expected = mix.normalized_weights().tolist() + [0.1, 0.2, 0.7]
    assert heights == pytest.approx(expected, abs=1e-6)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "spam (gamma 0.50)" in labels and "punctuation (gamma 2.00)" in labels
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["token", "LSTM 1", "LSTM 2"]
    assert len(fig.axes) == 1
    assert figure_png(fig) == figure_png(layer_mix_figure(mixes, ["token", "LSTM 1", "LSTM 2"]))  # deterministic


def test_reference_panels_one_axis_per_metric():
    fig = layer_mix_figure({"a": ([0.5, 0.5], 1.0)}, ["LSTM 1", "LSTM 2"],
                           reference={"POS, accuracy": {"LSTM 1": 97.3, "LSTM 2": 96.8}, "WSD, F1": {"LSTM 1": 67.4,
                                                                                               "LSTM 2": 69.0}})
    assert len(fig.axes) == 3
    pos, wsd = fig.axes[1], fig.axes[2]
    assert list(pos.lines[0].get_ydata()) == [97.3, 96.8] and list(wsd.lines[0].get_ydata()) == [67.4, 69.0]
    assert pos.get_ylabel() == "POS, accuracy" and wsd.get_ylabel() == "WSD, F1"
    for ax, (low, high) in ((pos, (96.8, 97.3)), (wsd, (67.4, 69.0))):
        bottom, top = ax.get_ylim()
        assert bottom < low and top > high and top - bottom < 10        # each metric on its own scale
    assert fig.get_size_inches()[0] * 100 <= 1200  # reads at about 960 px
    single = layer_mix_figure({"a": ([0.5, 0.5], 1.0)}, ["LSTM 1", "LSTM 2"],
                              reference={"POS": {"LSTM 1": 97.3, "LSTM 2": 96.8}}, reference_label="accuracy (%)")
    assert single.axes[1].get_ylabel() == "accuracy (%)"


def test_contributions_are_drawn_on_the_bars():
    fig = layer_mix_figure({"a": ([0.2, 0.8], 1.0)}, ["x", "y"], contributions={"a": [0.5, 0.5]})
    markers = fig.axes[0].lines[0]
    assert list(markers.get_ydata()) == [0.5, 0.5]
    with pytest.raises(ValueError, match="softmax weights"):
        layer_mix_figure({"a": ([0.2, 0.8], 1.0)}, ["x", "y"], contributions={"a": [0.7, 0.7]})


@pytest.mark.parametrize("mixes, names, match", [
    ({}, None, "at least one"),
    ({"a": ([0.5, 0.6], 1.0)}, None, "softmax weights"),
    ({"a": ([1.5, -0.5], 1.0)}, None, "softmax weights"),
    ({"a": ([[0.5, 0.5]], 1.0)}, None, "one value per layer"),
    ({"a": ([0.5, 0.5], 1.0), "b": ([0.2, 0.3, 0.5], 1.0)}, None, "same number of layers"),
    ({"a": ([0.5, 0.5], 1.0)}, ["only one"], "layer names"),
])
def test_bad_inputs_are_refused(mixes, names, match):
    with pytest.raises(ValueError, match=match):
        layer_mix_figure(mixes, names)
