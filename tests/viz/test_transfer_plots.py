"""Notebook 00's pictures: strategies as frozen/trainable grids, and weight distances as bars."""

import pytest
from matplotlib.colors import to_hex

from course_lib.viz.transfer import (
    plot_attention_change,
    plot_epoch_curves,
    plot_loss_per_epoch,
    plot_strategies,
    plot_weight_distances,
    rate_labels,
)

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
    assert "grey: frozen" in fig.axes[0].get_title()


def test_rate_labels_tell_neighbours_apart_and_the_title_names_only_what_is_drawn():
    rates = [4e-4 / 1.3 ** k for k in range(8, -1, -1)]  # discriminative rates, bottom to top
    labels = rate_labels(rates)
    assert len(set(labels)) == len(rates) and labels[-1] == "4.0e-04" and labels[-2] == "3.1e-04"
    assert rate_labels([1e-3, 1e-3, None, 2e-2]) == ["1e-03", "1e-03", "frozen", "2e-02"]
    assert rate_labels([None, "chosen"]) == ["frozen", "chosen"]
    head_only = plot_strategies({"probe": [None, None, "chosen"]}, GROUPS)
    assert [t.get_text() for t in head_only.axes[0].texts] == ["frozen", "frozen", "chosen"]
    assert cell_colours(head_only)[2] not in ("#d9d9d9",)
    fig = plot_strategies({"discriminative": rates}, [f"g{i}" for i in range(9)])
    assert [t.get_text() for t in fig.axes[0].texts] == labels
    assert "grey" not in fig.axes[0].get_title(), "nothing is frozen, so the title must not mention grey groups"


def test_strategy_picture_rejects_a_wrong_number_of_rates():
    with pytest.raises(ValueError, match="has 2 rates for 3 layer groups"):
        plot_strategies({"x": [1e-3, 1e-3]}, GROUPS)
    with pytest.raises(ValueError, match="no strategies"):
        plot_strategies({}, GROUPS)


def test_weight_distance_bars_one_per_run_and_group():
    fig = plot_weight_distances({"a": {"g1": 0.1, "g2": 0.2}, "b": {"g1": 0.0, "g2": 0.05}})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.1, 0.2, 0.0, 0.05]


def test_epoch_curves_one_panel_per_run_and_short_series_start_at_epoch_one():
    fig = plot_epoch_curves({"a": {"validation": [0.7, 0.3, 0.2], "training": [0.5, 0.25]},
                             "b": {"validation": [0.7, 0.6, 0.5]}}, columns=4)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["a", "b"]
    validation, training = visible[0].lines
    assert list(validation.get_xdata()) == [0, 1, 2] and list(training.get_xdata()) == [1, 2]
    with pytest.raises(ValueError, match="no runs"):
        plot_epoch_curves({})


def test_epoch_curves_width_widens_the_figure_and_its_labels():
    curves = {"a": {"rate 0.1": [0.5, 0.4]}, "b": {"rate 0.1": [0.6, 0.5]}}
    narrow, wide = plot_epoch_curves(curves, columns=2), plot_epoch_curves(curves, columns=2, width=9.6)
    assert wide.get_figwidth() == 9.6 > narrow.get_figwidth()
    assert wide.axes[0].get_legend().get_texts()[0].get_fontsize() > narrow.axes[0].get_legend().get_texts()[0].get_fontsize()


def test_attention_change_draws_a_pair_of_bars_per_token():
    fig = plot_attention_change(["[CLS]", "win", "[SEP]"], [0.5, 0.2, 0.3], [0.1, 0.8, 0.1])
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.5, 0.2, 0.3, 0.1, 0.8, 0.1]
    with pytest.raises(ValueError, match="one weight per token"):
        plot_attention_change(["a"], [1.0, 0.0], [1.0])


def test_loss_per_epoch_draws_each_step_and_a_bold_mean_per_epoch():
    from course_lib.training.loop import History

    history = History(loss=[1.0, 3.0, 0.5, 0.5], epoch_ends=[2, 4])
    fig = plot_loss_per_epoch({"run": history})
    steps, first, second = fig.axes[0].lines
    assert list(steps.get_ydata()) == [1.0, 3.0, 0.5, 0.5]
    assert list(first.get_ydata()) == [2.0, 2.0] and list(second.get_ydata()) == [0.5, 0.5]
    with pytest.raises(ValueError, match="no runs"):
        plot_loss_per_epoch({})


def test_weight_distance_bars_leave_out_a_group_a_run_did_not_snapshot():
    import math

    fig = plot_weight_distances({"all": {"body": 0.1, "head": 0.5}, "body only": {"body": 0.01}})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[:3] == [0.1, 0.5, 0.01] and math.isnan(heights[3])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["body", "head"]


def test_weight_distance_bars_keep_a_frozen_group_visible_on_a_wide_range():
    """A log axis silently drops a bar of 0 (a frozen group): symlog keeps its place and a "0" marks it."""
    fig = plot_weight_distances({"all": {"body": 1e-4, "head": 0.5}, "top only": {"body": 0.0, "head": 0.3}})
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog"
    assert ax.get_ylim()[0] == 0, "the axis starts at 0, so a bar of 0 has a place"
    marks = [t for t in ax.texts if t.get_text() == "0"]
    assert len(marks) == 1 and marks[0].get_position()[0] == ax.patches[2].get_x() + ax.patches[2].get_width() / 2
    assert "did not move" in fig._suptitle.get_text()


def test_weight_distance_bars_mark_a_group_a_run_did_not_snapshot():
    fig = plot_weight_distances({"all": {"body": 0.1, "head": 0.5}, "body only": {"body": 0.01}})
    assert [t.get_text() for t in fig.axes[0].texts] == ["n/a"]
    assert fig.axes[0].get_yscale() == "linear"
