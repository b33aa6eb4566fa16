"""ELMo's layer mixing as a picture: the softmax weights s_j and the scale gamma that each task learned (Eq. 1).

    fig = layer_mix_figure({"spam": (s_spam, gamma_spam), "punctuation": (s_punct, gamma_punct)},
                           layer_names=["token", "LSTM 1", "LSTM 2"],
                           reference={"POS (paper)": {"LSTM 1": 97.0, "LSTM 2": 95.8}}, reference_label="accuracy")

Left panel: one group of bars per biLM layer, one bar per task, bar height s_j (each task's bars sum to 1), gamma in
the legend. Right panel (optional): numbers from elsewhere, e.g. the paper's per-layer accuracies, so a reader sees
what the paper found next to what the tasks here chose. Built without pyplot, like ``course_lib.viz.plots``.
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
                     reference_label: str = "score", title: str = "what each task takes from each layer") -> Figure:
    """Bars of s_j per layer for every task (gamma in the legend); optionally a panel of reference numbers."""
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
    figure = Figure(figsize=(9.6, 3.6) if reference else (6.4, 3.6))
    axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]}) if reference else [figure.subplots()]
    ax = axes[0]
    width = 0.8 / len(weights)
    positions = np.arange(n_layers)
    for k, (task, s) in enumerate(weights.items()):
        gamma = float(mixes[task][1])
        bars = ax.bar(positions + (k - (len(weights) - 1) / 2) * width, s, width,
                      label=f"{task} (gamma {gamma:.2f})", color=f"C{k}")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in s], fontsize=7)
    ax.axhline(1.0 / n_layers, color="grey", linestyle=":", linewidth=1, label="uniform start (1 / layers)")
    ax.set_xticks(positions, names)
    ax.set(ylabel="mixing weight s_j = softmax(w)_j", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=8, loc="upper left")
    if reference:
        right = axes[1]
        columns = sorted({layer for scores in reference.values() for layer in scores},
                         key=lambda layer: names.index(layer) if layer in names else len(names))
        ref_width = 0.8 / len(reference)
        for k, (source, scores) in enumerate(reference.items()):
            xs = [columns.index(layer) + (k - (len(reference) - 1) / 2) * ref_width for layer in scores]
            bars = right.bar(xs, list(scores.values()), ref_width, label=source, color=f"C{k + len(weights)}")
            right.bar_label(bars, labels=[f"{v:g}" for v in scores.values()], fontsize=7)
        low = min(v for scores in reference.values() for v in scores.values())
        high = max(v for scores in reference.values() for v in scores.values())
        right.set_xticks(range(len(columns)), columns)
        margin = 0.15 * (high - low) + 2
        right.set(ylabel=reference_label, ylim=(low - margin, high + 2.5 * margin), title="reference")
        right.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return figure
