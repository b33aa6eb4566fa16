"""ELMo's picture in place of attention: pick a word, see its nearest tokens in every layer and under a mix.

An LSTM has no attention weights to draw; what it has is a vector per token in every layer. For one chosen token,
``neighbours_figure`` ranks the other tokens of the text by cosine similarity, once per layer (the token layer
groups by word identity only; the LSTM layers also by context) and once under a scalar mix of the layers
(``gamma * sum_j s_j h_j``; gamma does not change a cosine). ``NeighbourExplorer`` puts a dropdown of the tokens over
that picture, with a stored picture and a hint for readers without a kernel, like the course's other explorers.

    explorer = NeighbourExplorer(torch.stack(hidden_states)[:, 0], tokens, ["token", "LSTM 1", "LSTM 2"],
                                 mix_weights=s, word=3)
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from course_lib.viz.plots import figure_png
from course_lib.viz.view_pictures import fallback_html

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXPLORER_HINT = ("Picture of the nearest-token explorer as it first appears. To pick another word, run the cells above, "
                 "then this one (the widgets need a running kernel).")
DPI = 100  # 960 px wide


def _check(layers: torch.Tensor, tokens: Sequence[str], layer_names: Sequence[str],
           mix_weights: torch.Tensor | Sequence[float] | None) -> None:
    if layers.dim() != 3:
        raise ValueError(f"layers must be [layers, tokens, dim], got shape {tuple(layers.shape)}")
    if layers.size(1) != len(tokens) or len(tokens) < 2:
        raise ValueError(f"need one token label per position (at least 2), got {len(tokens)} for {layers.size(1)}")
    if len(layer_names) != layers.size(0):
        raise ValueError(f"{len(layer_names)} layer names for {layers.size(0)} layers")
    if mix_weights is not None and len(mix_weights) != layers.size(0):
        raise ValueError(f"{len(mix_weights)} mixing weights for {layers.size(0)} layers")


def nearest_tokens(layers: torch.Tensor, word: int, top: int = 5,
                   mix_weights: torch.Tensor | Sequence[float] | None = None) -> list[list[tuple[int, float]]]:
    """Per layer (then the mix, if weights are given): the ``top`` other positions nearest to ``word``, by cosine."""
    readings = list(layers)
    if mix_weights is not None:
        weights = torch.as_tensor(mix_weights, dtype=layers.dtype, device=layers.device)
        readings.append((weights[:, None, None] * layers).sum(0))                  # [tokens, dim]
    result = []
    for reading in readings:
        unit = F.normalize(reading, dim=-1)
        cosine = unit @ unit[word]                                                  # [tokens]
        cosine[word] = -float("inf")                                                # not itself
        values, indices = cosine.topk(min(top, len(cosine) - 1))
        result.append([(int(i), float(v)) for v, i in zip(values, indices)])
    return result


def neighbours_figure(layers: torch.Tensor, tokens: Sequence[str], layer_names: Sequence[str], word: int,
                      mix_weights: torch.Tensor | Sequence[float] | None = None, top: int = 5) -> Figure:
    """One panel per layer (and one for the mix): the chosen token's nearest tokens as bars of cosine similarity."""
    layers = layers.detach().float().cpu()
    _check(layers, tokens, layer_names, mix_weights)
    if not 0 <= word < len(tokens):
        raise ValueError(f"word must be a position in 0..{len(tokens) - 1}, got {word}")
    neighbours = nearest_tokens(layers, word, top, mix_weights)
    titles = list(layer_names) + ([f"mix, s = [{', '.join(f'{float(w):.2f}' for w in mix_weights)}]"]
                                  if mix_weights is not None else [])
    figure = Figure(figsize=(9.6, 1.2 + 0.35 * top))
    axes = np.atleast_1d(figure.subplots(1, len(titles), sharex=True))
    for ax, title, ranked in zip(axes, titles, neighbours):
        labels = [f"{tokens[i]} ({i})" for i, _ in ranked][::-1]
        values = [v for _, v in ranked][::-1]
        ax.barh(range(len(values)), values, color=["C2" if tokens[i] == tokens[word] else "C0"
                                                    for i, _ in ranked][::-1])
        ax.set_yticks(range(len(values)), labels, fontsize=9)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1, 1)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("cosine", fontsize=9)
    figure.suptitle(f"nearest tokens to '{tokens[word]}' (position {word}); green: the same word elsewhere",
                    fontsize=10)
    figure.tight_layout()
    return figure


class NeighbourExplorer:
    """A dropdown of the text's tokens over ``neighbours_figure``: the chosen token's nearest tokens per layer."""

    def __init__(self, layers: torch.Tensor, tokens: Sequence[str], layer_names: Sequence[str],
                 mix_weights: torch.Tensor | Sequence[float] | None = None, word: int = 0, top: int = 5):
        import ipywidgets as widgets

        self.layers = layers.detach().float().cpu()
        _check(self.layers, tokens, layer_names, mix_weights)
        self.tokens, self.layer_names, self.top = list(tokens), list(layer_names), top
        self.mix_weights = None if mix_weights is None else [float(w) for w in mix_weights]
        self.word = widgets.Dropdown(options=[(f"{t} ({i})", i) for i, t in enumerate(self.tokens)], value=word,
                                     description="Word")
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML(value="")
        for name in ("word", "image"):
            getattr(self, name).add_class(f"course-neighbours-{name}")
        self.widget = widgets.VBox([self.word, self.image, self.status])
        self.widget.add_class("course-neighbours-explorer")
        self.word.observe(lambda _change: self.redraw(), names="value")
        self.redraw()

    def redraw(self) -> None:
        """Draw the chosen word's neighbours; say which token is nearest in each reading."""
        word = self.word.value
        figure = neighbours_figure(self.layers, self.tokens, self.layer_names, word, self.mix_weights, self.top)
        self.image.value = figure_png(figure, dpi=DPI)
        nearest = nearest_tokens(self.layers, word, 1, self.mix_weights)
        names = self.layer_names + (["mix"] if self.mix_weights is not None else [])
        self.status.value = html.escape("nearest: " + "; ".join(
            f"{name}: '{self.tokens[ranked[0][0]]}' ({ranked[0][1]:.2f})" for name, ranked in zip(names, nearest)))

    def picture(self) -> bytes:
        """PNG of the picture as it is now (the explorer's stored first state)."""
        return bytes(self.image.value)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The widgets (a live front end shows them) plus a picture and a hint for readers without a kernel."""
        alt = "static picture of the nearest-token explorer's first state"
        return {
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
            "text/html": fallback_html(self.picture(), None, EXPLORER_HINT, alt),
            "text/plain": f"NeighbourExplorer: {EXPLORER_HINT}",
        }
