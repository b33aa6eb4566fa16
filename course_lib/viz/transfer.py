"""Pictures for notebook 00: what each transfer strategy freezes and trains, and how far the weights moved."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def rate_labels(rates: Sequence[float | str | None]) -> list[str]:
    """``"frozen"``, a word as given, or the rate in the fewest digits (``1e-03``, ``3.1e-04``) that tell different
    neighbouring rates apart."""
    for digits in range(4):
        labels = ["frozen" if r is None else r if isinstance(r, str) else f"{r:.{digits}e}" for r in rates]
        numbers = [(a, b, la, lb) for a, b, la, lb in zip(rates, rates[1:], labels, labels[1:])
                   if isinstance(a, float | int) and isinstance(b, float | int)]
        if all(a == b or la != lb for a, b, la, lb in numbers):
            return labels
    return labels


def plot_strategies(strategies: Mapping[str, Sequence[float | str | None]], group_names: Sequence[str],
                    title: str = "What trains in each strategy") -> Figure:
    """One column per strategy, one row per layer group (input at the bottom): grey = frozen, colour = its lr.

    ``strategies[name][i]`` is the learning rate of group ``i`` (bottom to top), ``None`` when it is frozen, or a
    word for a group that trains at a rate chosen later (e.g. ``"chosen"``, drawn in a plain colour).
    A list of rates can also describe a schedule's peak, e.g. discriminative rates that shrink towards the input.
    Each label has as many digits as it takes to tell a group's rate from its neighbours'.
    """
    if not strategies:
        raise ValueError("no strategies to draw")
    for name, rates in strategies.items():
        if len(rates) != len(group_names):
            raise ValueError(f"strategy {name!r} has {len(rates)} rates for {len(group_names)} layer groups")
    rates = [r for column in strategies.values() for r in column if isinstance(r, float | int)]
    norm = LogNorm(vmin=min(rates), vmax=max(rates)) if rates and min(rates) < max(rates) else None
    fig = Figure(figsize=(1.55 * len(strategies) + 2.2, 0.42 * len(group_names) + 1.3))
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["viridis"]
    for x, (name, column) in enumerate(strategies.items()):
        for y, (rate, label) in enumerate(zip(column, rate_labels(column))):
            level = norm(rate) if norm and isinstance(rate, float | int) else 0.8
            colour = "#d9d9d9" if rate is None else "#9ecae1" if isinstance(rate, str) else colours(level)
            ax.add_patch(Rectangle((x + 0.05, y + 0.08), 0.9, 0.84, color=colour))
            dark = isinstance(rate, float | int) and level < 0.55
            ax.text(x + 0.5, y + 0.5, label, ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black")
    ax.set_xlim(0, len(strategies))
    ax.set_ylim(0, len(group_names))
    ax.set_xticks([i + 0.5 for i in range(len(strategies))], list(strategies), rotation=20, ha="right", fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(group_names))], list(group_names), fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    any_frozen = any(r is None for column in strategies.values() for r in column)
    key = "grey: frozen; colour: learning rate" if any_frozen else "colour: learning rate"
    ax.set_title(f"{title}  ({key})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_weight_distances(distances: Mapping[str, Mapping[str, float]], title: str = "How far the weights moved"
                          ) -> Figure:
    """Grouped bars: for each run, the relative distance ||w - w0|| / ||w0|| of every layer group.

    When the distances span more than two orders of magnitude the axis is symmetric-log (``symlog``): logarithmic
    above the smallest distance that moved, linear below it, so that a group that did not move (a frozen one, 0)
    keeps its place and is marked "0" instead of silently disappearing as it would on a log axis.
    A run may leave a group out (it did not snapshot that group): it gets no bar there, marked "n/a".
    """
    if not distances:
        raise ValueError("no runs to draw")
    groups = list(dict.fromkeys(name for per_group in distances.values() for name in per_group))
    fig = Figure(figsize=(max(6.0, 0.8 * len(groups) + 2), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / len(distances)
    unmoved = []  # (x, "0" or "n/a", colour): bars a reader could not see
    for i, (run, per_group) in enumerate(distances.items()):
        xs = [g + (i - (len(distances) - 1) / 2) * width for g in range(len(groups))]
        heights = [per_group.get(name, math.nan) for name in groups]
        bars = ax.bar(xs, heights, width=width, label=run)
        colour = bars.patches[0].get_facecolor()
        unmoved += [(x, "n/a" if math.isnan(h) else "0", colour) for x, h in zip(xs, heights) if not h > 0]
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("||w - w0|| / ||w0||")
    values = [v for d in distances.values() for v in d.values() if v > 0]
    if values and max(values) / min(values) > 100:
        floor = 10 ** math.floor(math.log10(min(values)))  # linear below the smallest distance that moved
        ax.set_yscale("symlog", linthresh=floor, linscale=0.5)
        ax.set_ylim(0, 10 ** math.ceil(math.log10(max(values))))
    for x, text, colour in unmoved:
        ax.text(x, 0, text, ha="center", va="bottom", fontsize=8, color=colour, fontweight="bold",
                rotation=90 if text == "n/a" else 0)
    if any(text == "0" for _, text, _ in unmoved):
        title += '  ("0": the group did not move, it was frozen)'
    ax.legend(fontsize=8, ncol=min(len(distances), 3), loc="lower left", bbox_to_anchor=(0.0, 1.01), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_epoch_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], ylabel: str = "loss",
                      columns: int = 4, title: str = "Learning, epoch by epoch", first_epoch: int = 0,
                      width: float | None = None) -> Figure:
    """Small multiples, one panel per run, so no curve hides another; each panel draws every named series.

    ``curves[run][series]`` is one value per epoch. The longest series starts at ``first_epoch`` (0: before
    training); a shorter one ends with it, e.g. ``{"validation": [0.7, 0.3, 0.2], "training": [0.5, 0.2]}`` draws
    the training losses at epochs 1 and 2. ``width`` (inches) widens the figure, with larger labels, for few panels.
    """
    if not curves:
        raise ValueError("no runs to draw")
    rows = -(-len(curves) // columns)
    panels = min(columns, len(curves))
    fig_width = width or 2.35 * panels + 0.4
    font = 9 if fig_width / panels >= 3.5 else 7  # readable labels where each panel is wide enough for them
    fig = Figure(figsize=(fig_width, (2.1 if width is None else fig_width / panels * 0.62) * rows + 0.5))
    axes = fig.subplots(rows, min(columns, len(curves)), sharex=True, sharey=True, squeeze=False)
    longest = max(len(values) for run in curves.values() for values in run.values())
    for ax, (run, series) in zip(axes.flat, curves.items()):
        for i, (name, values) in enumerate(series.items()):
            first = first_epoch + longest - len(values)
            style = "o-" if longest <= 12 else "-"  # markers only where there are few points
            ax.plot(range(first, first + len(values)), values, style, color=f"C{i}", markersize=4, label=name)
        ax.set_title(run, fontsize=font + 2)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=font + 1)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=font + 1)
        if longest <= 12:
            ax.set_xticks(range(first_epoch, first_epoch + longest))
    axes.flat[0].legend(fontsize=font)
    fig.suptitle(title, fontsize=font + 3)
    fig.tight_layout()
    return fig


def plot_attention_change(tokens: Sequence[str], before: Sequence[float], after: Sequence[float],
                          title: str = "What [CLS] attends to in the top layer") -> Figure:
    """Grouped bars, one pair per token: the attention weight before (pretrained) and after fine-tuning."""
    if not len(tokens) == len(before) == len(after):
        raise ValueError(f"need one weight per token, got {len(tokens)} tokens, {len(before)} and {len(after)} weights")
    fig = Figure(figsize=(min(9.4, 0.36 * len(tokens) + 1.6), 3.0))
    ax = fig.add_subplot()
    xs = range(len(tokens))
    ax.bar([x - 0.2 for x in xs], before, width=0.4, color="#9e9e9e", label="pretrained")
    ax.bar([x + 0.2 for x in xs], after, width=0.4, color="C0", label="fine-tuned")
    ax.set_xticks(list(xs), list(tokens), rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(tokens) - 0.4)
    ax.set_ylabel("attention weight (mean of heads)", fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss_per_epoch(histories: Mapping[str, object], columns: int = 3,
                        title: str = "Training loss: per step (faint) and per epoch (bold)") -> Figure:
    """Small multiples, one panel per run: the loss of every step, and its mean over each epoch.

    ``histories[run]`` has ``.loss`` (one value per step) and ``.epoch_ends`` (the step count at each epoch's end),
    as ``course_lib.training.loop.History`` does. A step's loss mostly shows which examples its batch held; the epoch
    mean, where every example counts once, shows the learning.
    """
    if not histories:
        raise ValueError("no runs to draw")
    rows = -(-len(histories) // columns)
    fig = Figure(figsize=(3.1 * min(columns, len(histories)) + 0.4, 2.3 * rows + 0.5))
    axes = fig.subplots(rows, min(columns, len(histories)), sharex=True, sharey=True, squeeze=False)
    for ax, (run, history) in zip(axes.flat, histories.items()):
        ax.plot(range(1, len(history.loss) + 1), history.loss, color="C0", alpha=0.3, linewidth=1)
        starts = [0] + list(history.epoch_ends[:-1])
        for start, end in zip(starts, history.epoch_ends):
            mean = sum(history.loss[start:end]) / max(end - start, 1)
            ax.plot([start + 0.5, end + 0.5], [mean, mean], color="C0", linewidth=2.5)
        ax.set_title(run, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(histories):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("cross-entropy", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
