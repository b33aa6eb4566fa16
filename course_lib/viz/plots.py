"""Static matplotlib pictures of attention: a layer's heads, per-layer averages, causal vs bidirectional masks.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook shows it exactly once
(as the cell's value) and a script can ``fig.savefig(...)``. Rows are queries (the token that looks), columns are keys
(the tokens it looks at); every row of an attention matrix sums to 1 (Vaswani et al. 2017, Eq. 1).
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_lib.viz.attention_data import check_tokens, one_example

CMAP = "Blues"


def figure_png(figure: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes, without version metadata: two equal fresh figures give equal bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _label_size(n_tokens: int) -> float:
    """Tick label font size that still fits ``n_tokens`` labels."""
    return max(4.0, min(9.0, 180.0 / max(n_tokens, 1)))


def attention_heatmap(
    ax: Axes,
    weights: Any,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str | None = None,
    vmax: float | None = None,
):
    """Draw one ``[query, key]`` matrix on ``ax``: rows are the tokens that look, columns the tokens looked at."""
    matrix = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"a heatmap needs a [query, key] matrix, got shape {matrix.shape}")
    image = ax.imshow(matrix, cmap=CMAP, vmin=0.0, vmax=vmax if vmax is not None else max(matrix.max(), 1e-9))
    for axis, labels, n in ((ax.xaxis, key_tokens, matrix.shape[1]), (ax.yaxis, query_tokens, matrix.shape[0])):
        if labels is None:
            axis.set_ticks([])
            continue
        if len(labels) != n:
            raise ValueError(f"{len(labels)} tick labels for {n} rows/columns")
        axis.set_ticks(range(n))
        axis.set_ticklabels(labels, fontsize=_label_size(n))
    ax.tick_params(axis="x", labelrotation=90, length=0)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, fontsize=10)
    return image


def _grid(n_panels: int, columns: int, panel_inches: float) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes laid out ``columns`` per row (spare axes hidden)."""
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, n_panels)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(panel_inches * columns, panel_inches * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]


def plot_layer_heads(
    source: Any, tokens: Sequence[str], layer: int, *, example: int = 0, columns: int = 4, panel_inches: float = 2.6
) -> Figure:
    """Every head of one layer side by side: heads of the same layer learn different patterns."""
    attentions = one_example(source, example)  # per layer [1, heads, query, key]
    tokens = check_tokens(attentions, tokens)
    if not -len(attentions) <= layer < len(attentions):
        raise ValueError(f"layer={layer} is outside the model's {len(attentions)} layers")
    heads = attentions[layer][0]  # [heads, query, key]
    figure, axes = _grid(heads.size(0), columns, panel_inches)
    show_labels = len(tokens) <= 24
    for head, ax in enumerate(axes):
        labels = tokens if show_labels else None
        attention_heatmap(ax, heads[head], labels, labels, title=f"layer {layer % len(attentions)}, head {head}")
    figure.suptitle("Rows: query token; columns: the keys it attends to")
    return figure


def plot_layer_averages(
    source: Any, tokens: Sequence[str], *, example: int = 0, columns: int = 4, panel_inches: float = 2.6
) -> Figure:
    """Each layer's attention averaged over its heads: how the pattern changes from the bottom to the top layer."""
    attentions = one_example(source, example)
    tokens = check_tokens(attentions, tokens)
    figure, axes = _grid(len(attentions), columns, panel_inches)
    labels = tokens if len(tokens) <= 24 else None
    for layer, ax in enumerate(axes):
        mean = attentions[layer][0].mean(dim=0)  # [query, key], rows still sum to 1
        attention_heatmap(ax, mean, labels, labels, title=f"layer {layer}: mean of heads")
    return figure


def plot_attention_masks(
    tokens: Sequence[str] | int, *, causal: Any = None, bidirectional: Any = None, panel_inches: float = 3.2
) -> Figure:
    """GPT's causal mask next to BERT's bidirectional one; optional measured ``[query, key]`` weights underneath.

    Causal (Radford et al. 2018): token i attends to tokens 0..i only. Bidirectional (Devlin et al. 2019): every token
    attends to every token. Pass ``causal`` / ``bidirectional`` weights of real models to see the masks at work.
    """
    labels = [f"t{i}" for i in range(tokens)] if isinstance(tokens, int) else [str(token) for token in tokens]
    n = len(labels)
    if n < 1:
        raise ValueError("need at least one token")
    masks = {
        "causal mask (GPT)": torch.tril(torch.ones(n, n)),  # [query, key]: 1 = may attend
        "bidirectional mask (BERT)": torch.ones(n, n),
    }
    weights = {"causal": causal, "bidirectional": bidirectional}
    rows = 2 if any(value is not None for value in weights.values()) else 1
    figure = Figure(figsize=(2 * panel_inches, rows * panel_inches), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False)
    for column, (title, mask) in enumerate(masks.items()):
        attention_heatmap(axes[0][column], mask, labels, labels, title=title, vmax=1.0)
    if rows == 2:
        for column, (name, value) in enumerate(weights.items()):
            ax = axes[1][column]
            if value is None:
                ax.set_visible(False)
                continue
            matrix = value.detach().cpu() if isinstance(value, torch.Tensor) else np.asarray(value)
            if tuple(matrix.shape) != (n, n):
                raise ValueError(f"{name} weights must be [query, key] = ({n}, {n}), got {tuple(matrix.shape)}")
            attention_heatmap(ax, matrix, labels, labels, title=f"{name} attention weights")
    return figure
