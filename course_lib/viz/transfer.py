"""Pictures for notebook 00: what each transfer strategy freezes and trains, and how far the weights moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle
from matplotlib.figure import Figure


def plot_strategies(strategies: Mapping[str, Sequence[float | None]], group_names: Sequence[str],
                    title: str = "What trains in each strategy") -> Figure:
    """One column per strategy, one row per layer group (input at the bottom): grey = frozen, colour = its lr.

    ``strategies[name][i]`` is the learning rate of group ``i`` (bottom to top), or ``None`` when it is frozen.
    A list of rates can also describe a schedule's peak, e.g. discriminative rates that shrink towards the input.
    """
    if not strategies:
        raise ValueError("no strategies to draw")
    for name, rates in strategies.items():
        if len(rates) != len(group_names):
            raise ValueError(f"strategy {name!r} has {len(rates)} rates for {len(group_names)} layer groups")
    rates = [r for column in strategies.values() for r in column if r is not None]
    norm = LogNorm(vmin=min(rates), vmax=max(rates)) if rates and min(rates) < max(rates) else None
    fig = Figure(figsize=(1.55 * len(strategies) + 2.2, 0.42 * len(group_names) + 1.3))
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["viridis"]
    for x, (name, column) in enumerate(strategies.items()):
        for y, rate in enumerate(column):
            frozen = rate is None
            colour = "#d9d9d9" if frozen else colours(norm(rate) if norm else 0.8)
            ax.add_patch(Rectangle((x + 0.05, y + 0.08), 0.9, 0.84, color=colour))
            label = "frozen" if frozen else f"{rate:.0e}"
            dark = not frozen and (norm(rate) if norm else 0.8) < 0.55
            ax.text(x + 0.5, y + 0.5, label, ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black")
    ax.set_xlim(0, len(strategies))
    ax.set_ylim(0, len(group_names))
    ax.set_xticks([i + 0.5 for i in range(len(strategies))], list(strategies), rotation=20, ha="right", fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(group_names))], list(group_names), fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title + "  (grey: frozen; colour: learning rate)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_weight_distances(distances: Mapping[str, Mapping[str, float]], title: str = "How far the weights moved"
                          ) -> Figure:
    """Grouped bars: for each run, the relative distance ||w - w0|| / ||w0|| of every layer group."""
    if not distances:
        raise ValueError("no runs to draw")
    groups = list(next(iter(distances.values())))
    fig = Figure(figsize=(max(6.0, 0.8 * len(groups) + 2), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / len(distances)
    for i, (run, per_group) in enumerate(distances.items()):
        xs = [g + (i - (len(distances) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [per_group[name] for name in groups], width=width, label=run)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("||w - w0|| / ||w0||")
    values = [v for d in distances.values() for v in d.values() if v > 0]
    if values and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig

