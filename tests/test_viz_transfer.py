"""Notebook 00's pictures: strategies as frozen/trainable grids, and weight distances as bars."""

import pytest
from matplotlib.colors import to_hex

from course_lib.viz.transfer import plot_strategies, plot_weight_distances

GROUPS = ["embeddings", "layer 1", "head"]


def cell_colours(fig):
    return [to_hex(p.get_facecolor()) for p in fig.axes[0].patches]


def test_frozen_groups_are_grey_and_trainable_ones_are_labelled_with_their_rate():
    fig = plot_strategies({"feature extraction": [None, None, 1e-2], "fine-tune": [1e-4, 1e-4, 1e-4]}, GROUPS)
    colours = cell_colours(fig)
    assert colours[:2] == ["#d9d9d9", "#d9d9d9"] and colours[2] != "#d9d9d9"
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["frozen", "frozen", "1e-02", "1e-04", "1e-04", "1e-04"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == GROUPS


def test_strategy_picture_rejects_a_wrong_number_of_rates():
    with pytest.raises(ValueError, match="has 2 rates for 3 layer groups"):
        plot_strategies({"x": [1e-3, 1e-3]}, GROUPS)
    with pytest.raises(ValueError, match="no strategies"):
        plot_strategies({}, GROUPS)


def test_weight_distance_bars_one_per_run_and_group():
    fig = plot_weight_distances({"a": {"g1": 0.1, "g2": 0.2}, "b": {"g1": 0.0, "g2": 0.05}})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.1, 0.2, 0.0, 0.05]
