"""ELMo's layer mixing as a picture: the softmax weights s_j and the scale gamma that each task learned (Eq. 1).

    fig = layer_mix_figure({"spam": (s_spam, gamma_spam), "punctuation": (s_punct, gamma_punct)},
                           layer_names=["token", "LSTM 1", "LSTM 2"],
                           reference={"POS (paper)": {"LSTM 1": 97.0, "LSTM 2": 95.8}}, reference_label="accuracy")

Left panel: one group of bars per biLM layer, one bar per task, bar height s_j (each task's bars sum to 1), gamma in
the legend. Right panels (optional): numbers from elsewhere, e.g. the paper's per-layer accuracies, one panel and axis per
metric, so a reader sees what the paper found next to what the tasks here chose. Built without pyplot, like ``course_lib.viz.plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure


def _weights(values, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"the weights of {name!r} must be one value per layer, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or abs(array.sum() - 1.0) > 1e-3:
        raise ValueError(f"the weights of {name!r} must be softmax weights (>= 0, sum 1), got {array.round(4)}")
    return array


def layer_mix_figure(mixes: Mapping[str, tuple[Sequence[float] | torch.Tensor, float]],
                     layer_names: Sequence[str] | None = None,
                     reference: Mapping[str, Mapping[str, float]] | None = None,
                     reference_label: str = "score", title: str = "what each task takes from each layer",
                     contributions: Mapping[str, Sequence[float] | torch.Tensor] | None = None) -> Figure:
    """Bars of s_j per layer for every task (gamma in the legend); optionally reference numbers, one axis each.

    ``reference`` maps a source (e.g. "POS tagging, accuracy (paper)") to its scores by layer; every source gets its
    own panel and y-axis, since accuracies and F1s are not on one scale (``reference_label`` names the axis when
    there is one source). ``contributions`` maps a task to each layer's share of the mixed vector's size,
    s_j * ||h_j|| normalised (``course_lib.training.layer_probe.mix_contributions``), drawn as markers on its bars.
    """
    if not mixes:
        raise ValueError("need at least one task's (weights, gamma)")
    weights = {task: _weights(s, task) for task, (s, _) in mixes.items()}
    sizes = {w.size for w in weights.values()}
    if len(sizes) != 1:
        raise ValueError(f"every task must mix the same number of layers, got {sorted(sizes)}")
    n_layers = sizes.pop()
    names = list(layer_names) if layer_names is not None else [f"layer {j}" for j in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    n_reference = len(reference) if reference else 0
    figure = Figure(figsize=(9.6, 3.8) if reference else (6.4, 3.6))
    axes = (figure.subplots(1, 1 + n_reference, gridspec_kw={"width_ratios": [3] + [1.2] * n_reference})
            if reference else [figure.subplots()])
    ax = axes[0]
    width = 0.8 / len(weights)
    positions = np.arange(n_layers)
    for k, (task, s) in enumerate(weights.items()):
        gamma = float(mixes[task][1])
        bars = ax.bar(positions + (k - (len(weights) - 1) / 2) * width, s, width,
                      label=f"{task} (gamma {gamma:.2f})", color=f"C{k}")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in s], fontsize=7)
        if contributions is not None and task in contributions:
            shares = _weights(contributions[task], f"contributions of {task}")
            if shares.size != n_layers:
                raise ValueError(f"contributions of {task!r}: {shares.size} values for {n_layers} layers")
            ax.plot(positions + (k - (len(weights) - 1) / 2) * width, shares, "D", color="black", markersize=5,
                    label="s_j x ||h_j||, as a share" if k == 0 else None)
    ax.axhline(1.0 / n_layers, color="grey", linestyle=":", linewidth=1, label="uniform start (1 / layers)")
    ax.set_xticks(positions, names)
    ax.set(ylabel="mixing weight s_j = softmax(w)_j", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=8, loc="upper left")
    if reference:
        for k, (source, scores) in enumerate(reference.items()):
            right = axes[1 + k]
            columns = [layer for layer in names if layer in scores] + [layer for layer in scores if layer not in names]
            values = [scores[layer] for layer in columns]       # points, not bars: the axis need not start at 0
            right.plot(range(len(columns)), values, "o-", color=f"C{k + len(weights)}")
            for x, value in enumerate(values):
                right.annotate(f"{value:g}", (x, value), textcoords="offset points", xytext=(0, 6), ha="center",
                               fontsize=7)
            low, high = min(scores.values()), max(scores.values())
            margin = max(0.5, 0.6 * (high - low))
            right.set_xticks(range(len(columns)), columns, fontsize=8)
            right.set_xlim(-0.5, len(columns) - 0.5)
            right.set(ylabel=reference_label if n_reference == 1 else source, ylim=(low - 2 * margin, high + margin),
                      title="reference")
            right.yaxis.label.set_fontsize(8)
    figure.tight_layout()
    return figure
