"""Static pictures of bertviz's views as they first appear, for readers whose browser has not run the view's script.

A fresh clone is untrusted: JupyterLab strips its scripts, and GitHub never runs them, so a stored bertviz view would
show empty drop-downs. Each view's HTML therefore starts with a PNG of its first state, drawn with matplotlib from the
same rounded weights, and a one-line hint; the view's script hides both once bertviz has drawn (``fallback_html``).
Lines follow bertviz: one line per (query, key) pair, its opacity the attention weight (Vig 2019, "A Multiscale
Visualization of Attention in the Transformer Model").
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_lib.viz.plots import figure_png

# d3.schemeCategory10, the colours bertviz gives heads (head view) and layers (model view); the same as "tab10".
CATEGORY10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
              "#17becf"]
NEURON_VIEW_COLOR = "blue"  # neuron_view.js, light mode
BERTVIZ_HINT = ('Static picture. For the interactive view, run this cell or trust the notebook ("Trust Notebook" in '
                "the command palette).")
TOKEN_STEP = 1.0  # vertical distance between two tokens, in data units


def _lines(ax: Axes, weights: np.ndarray, x_left: float, x_right: float, color: str, scale: float = 1.0) -> None:
    """One line from every query (left, row i) to every key (right, row j), opacity ``scale * weight``."""
    n_queries, n_keys = weights.shape
    queries, keys = np.meshgrid(np.arange(n_queries), np.arange(n_keys), indexing="ij")  # [query, key] each
    segments = np.stack(
        [np.stack([np.full(queries.shape, x_left), -queries * TOKEN_STEP], -1),
         np.stack([np.full(keys.shape, x_right), -keys * TOKEN_STEP], -1)], axis=-2
    ).reshape(-1, 2, 2)  # [query * key, 2 ends, (x, y)]
    colors = np.tile(to_rgba(color), (len(segments), 1))
    colors[:, 3] = np.clip(weights.reshape(-1) * scale, 0.0, 1.0)
    keep = colors[:, 3] > 0.004  # invisible lines only make the PNG bigger
    ax.add_collection(LineCollection(segments[keep], colors=colors[keep], linewidths=1.4))


def _two_columns(ax: Axes, left: Sequence[str], right: Sequence[str], gap: float, font_size: float) -> None:
    """Tokens written as bertviz does: queries right-aligned on the left, keys left-aligned on the right."""
    for row, token in enumerate(left):
        ax.text(-0.05, -row * TOKEN_STEP, token, ha="right", va="center", fontsize=font_size)
    for row, token in enumerate(right):
        ax.text(gap + 0.05, -row * TOKEN_STEP, token, ha="left", va="center", fontsize=font_size)
    ax.set_xlim(-1.6, gap + 1.6)
    ax.set_ylim(-(max(len(left), len(right)) - 0.5) * TOKEN_STEP, 0.5 * TOKEN_STEP)
    ax.set_axis_off()


def _as_numpy(weights: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=float)


def head_view_figure(
    layer_weights: torch.Tensor | np.ndarray,
    left_tokens: Sequence[str],
    right_tokens: Sequence[str],
    heads: Sequence[int],
    layer: int,
) -> Figure:
    """The head view's first picture: the chosen ``heads`` of one layer ``[heads, query, key]``, one colour each."""
    weights = _as_numpy(layer_weights)  # [heads, query, key]
    rows = max(len(left_tokens), len(right_tokens))
    figure = Figure(figsize=(4.6, 1.1 + 0.24 * rows), layout="constrained")
    ax = figure.subplots()
    heads = list(heads)
    for head in heads:  # bertviz divides each line's opacity by the number of heads shown
        _lines(ax, weights[head], 0.0, 1.0, CATEGORY10[head % 10], scale=1.0 / len(heads))
    _two_columns(ax, left_tokens, right_tokens, 1.0, font_size=9)
    step = min(3.0 / max(len(heads), 1), 0.3)  # a colour swatch per head above the tokens (bertviz's check boxes)
    for index, head in enumerate(heads):
        ax.add_patch(Rectangle((-1.0 + index * step, 0.9), 0.85 * step, 0.7, color=CATEGORY10[head % 10]))
    ax.set_ylim(top=1.7 * TOKEN_STEP)
    if len(heads) <= 6:
        names = "heads " + ", ".join(str(head) for head in heads)
    elif heads == list(range(heads[0], heads[-1] + 1)):
        names = f"heads {heads[0]}-{heads[-1]}"
    else:
        names = f"{len(heads)} heads"
    ax.set_title(f"layer {layer}, {names} (one colour each)", fontsize=9)
    return figure


def neuron_view_figure(
    weights: torch.Tensor | np.ndarray, left_tokens: Sequence[str], right_tokens: Sequence[str], layer: int, head: int
) -> Figure:
    """The neuron view's first picture: one head's ``[query, key]`` attention as lines, before any token is opened."""
    rows = max(len(left_tokens), len(right_tokens))
    figure = Figure(figsize=(4.0, 0.9 + 0.24 * rows), layout="constrained")
    ax = figure.subplots()
    _lines(ax, _as_numpy(weights), 0.0, 1.0, NEURON_VIEW_COLOR)
    _two_columns(ax, left_tokens, right_tokens, 1.0, font_size=9)
    ax.set_title(f"layer {layer}, head {head}", fontsize=9)
    return figure


def model_view_figure(attentions: Sequence[torch.Tensor | np.ndarray], layers: Sequence[int], heads: Sequence[int]
                      ) -> Figure:
    """The model view's first picture: a thumbnail per (layer, head), from per-layer ``[heads, query, key]``."""
    if len(attentions) != len(layers):
        raise ValueError(f"{len(attentions)} attention layers for {len(layers)} layer labels")
    n_tokens = _as_numpy(attentions[0]).shape[-1]
    columns, left, top, bottom = len(heads), 0.6, 0.5, 0.05  # margins in inches: labels left, titles on top
    width = min(12.0, 1.0 * columns + left)  # about 960 px at 80 dpi for 12 heads
    row_height = max(0.5, min((width - left) / columns, 0.06 * n_tokens + 0.2))
    height = top + bottom + len(layers) * row_height
    figure = Figure(figsize=(width, height))
    grid = figure.subplots(len(layers), columns, squeeze=False,
                           gridspec_kw={"left": left / width, "right": 0.995, "top": 1 - top / height,
                                        "bottom": bottom / height, "wspace": 0.08, "hspace": 0.08})
    for row, (layer, weights) in enumerate(zip(layers, attentions)):
        weights = _as_numpy(weights)  # [heads, query, key]
        for column, head in enumerate(heads):
            ax = grid[row][column]
            _lines(ax, weights[column], 0.0, 1.0, CATEGORY10[layer % 10])
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-(n_tokens - 0.5) * TOKEN_STEP, 0.5 * TOKEN_STEP)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("#dddddd")
            if row == 0:
                ax.set_title(str(head), fontsize=9)
            if column == 0:
                ax.set_ylabel(str(layer), fontsize=9, rotation=0, ha="right", va="center")
    figure.text(0.5, 1 - 0.04 / height, "Heads", ha="center", va="top", fontsize=10, fontweight="bold")
    middle = (bottom + (height - top - bottom) / 2) / height
    figure.text(0.005, middle, "Layers", ha="left", va="center", fontsize=10, fontweight="bold", rotation=90)
    return figure


def _palette_png(image) -> bytes:
    """A PIL image as a 64-colour palette PNG: thousands of faint lines take 4-6x fewer bytes than in RGB."""
    from PIL import Image  # Pillow comes with matplotlib

    buffer = io.BytesIO()
    palette = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MAXCOVERAGE)  # keeps white white
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def compact_png(figure: Figure, dpi: int = 80) -> bytes:
    """The figure as a small palette PNG."""
    from PIL import Image

    return _palette_png(Image.open(io.BytesIO(figure_png(figure, dpi=dpi))))


def side_by_side_png(pngs: Sequence[bytes]) -> bytes:
    """Several PNG pictures next to each other, top-aligned on white, as one small palette PNG."""
    from PIL import Image

    images = [Image.open(io.BytesIO(bytes(png))).convert("RGB") for png in pngs]
    canvas = Image.new("RGB", (sum(image.width for image in images), max(image.height for image in images)), "white")
    left = 0
    for image in images:
        canvas.paste(image, (left, 0))
        left += image.width
    return _palette_png(canvas)


def fallback_html(png: bytes, fallback_id: str | None, hint: str, alt: str) -> str:
    """A ``<div>`` with the picture as a data-URI PNG and a one-line hint; it survives JupyterLab's sanitizer."""
    png = base64.b64encode(png).decode("ascii")
    div_id = f' id="{fallback_id}"' if fallback_id else ""
    return (
        f'<div{div_id} class="course-viz-fallback">'
        f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}" style="max-width:100%">'
        f'<div class="course-viz-hint" style="font-size:12px;color:#555">{html.escape(hint)}</div></div>'
    )
