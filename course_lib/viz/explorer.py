"""An attention explorer built from ipywidgets and matplotlib only: no CDN, no ipympl, ipywidgets 7.7 and 8.

Type a text (or a sentence pair), press "Encode", then pick a layer, a head and a token. The left picture is the
chosen head's ``[query, key]`` attention matrix; the right one shows what the chosen token attends to in every head
of the layer. Pictures are PNG bytes in ``ipywidgets.Image``, so they render in JupyterLab, Notebook, Colab and VS Code.

A widget lives only while its kernel runs. The explorer's output therefore also carries a picture of its first state
and a hint (``text/html``, ``text/plain``); ``scripts/execute_notebooks.py`` stores only those, so a reader without a
kernel (GitHub, a fresh clone) sees the picture, while a live run shows the widget (ipywidgets 7 and 8).
"""

from __future__ import annotations

import html
from typing import Any, Callable

import numpy as np
import torch
from matplotlib.figure import Figure

from course_lib.viz.attention_data import attention_tuple, check_tokens, make_encoder
from course_lib.viz.plots import attention_heatmap, figure_png
from course_lib.viz.view_pictures import fallback_html, side_by_side_png

MEAN_OF_HEADS = -1  # the head selector's value for "average over all heads"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXPLORER_HINT = ("Picture of the explorer as it first appears. To explore, run the cells above, then this one "
                 "(the widgets need a running kernel).")


class AttentionExplorer:
    """Widgets to browse a model's attention: text box(es), layer slider, head and token selectors, two heatmaps."""

    def __init__(
        self,
        encode: Callable[..., Any] | tuple[Any, Any],
        text: str = "The animal didn't cross the street because it was too tired.",
        text_b: str | None = None,
        *,
        pair: bool | None = None,
        layer: int = 0,
        head: int = MEAN_OF_HEADS,
        token: int = 0,
    ):
        import ipywidgets as widgets

        if isinstance(encode, tuple):
            if len(encode) != 2:
                raise ValueError(f"expected encode(text, text_b=None) or a (model, tokenizer) pair, got {len(encode)}")
            encode = make_encoder(*encode)
        if not callable(encode):
            raise ValueError(f"encode must be callable or a (model, tokenizer) pair, got {type(encode).__name__}")
        self.encode = encode
        self.pair = text_b is not None if pair is None else pair
        self.tokens: list[str] = []
        self.attentions: tuple[torch.Tensor, ...] = ()  # per layer [heads, query, key] of the encoded text
        self.matrix = np.zeros((0, 0))  # the [query, key] matrix on the left picture
        self.token_matrix = np.zeros((0, 0))  # [heads, key]: the chosen token's attention in every head
        self._quiet = False  # True while several selectors change at once: draw only at the end

        width = "380px" if self.pair else "560px"
        box = {"style": {"description_width": "initial"}, "layout": widgets.Layout(width=width)}
        self.text = widgets.Text(value=text, description="Sentence A" if self.pair else "Text", **box)
        self.text_b = widgets.Text(value=text_b or "", description="Sentence B", **box)
        self.encode_button = widgets.Button(description="Encode", button_style="primary")
        self.layer = widgets.IntSlider(value=0, min=0, max=0, description="Layer", continuous_update=False)
        self.head = widgets.Dropdown(options=[("mean", MEAN_OF_HEADS)], value=MEAN_OF_HEADS, description="Head")
        self.token = widgets.Dropdown(options=[("", 0)], value=0, description="Token")
        self.heatmap = widgets.Image(format="png")
        self.token_plot = widgets.Image(format="png")
        self.status = widgets.HTML(value="")
        note = getattr(encode, "note", None)  # what the text must hold, e.g. Transformer-XL's two segments
        self.note = widgets.HTML(value=f"<small>{html.escape(note)}</small>" if note else "")
        for name in ("layer", "head", "token", "heatmap", "token_plot", "encode_button", "text", "text_b"):
            getattr(self, name).add_class(f"course-explorer-{name.replace('_', '-')}")

        texts = [self.text, self.text_b] if self.pair else [self.text]
        self.widget = widgets.VBox(
            [
                widgets.HBox([*texts, self.encode_button]),
                *([self.note] if note else []),
                widgets.HBox([self.layer, self.head, self.token]),
                widgets.HBox([self.heatmap, self.token_plot]),
                self.status,
            ]
        )
        self.widget.add_class("course-explorer")
        self.encode_button.on_click(lambda _button: self.run())
        for selector in (self.layer, self.head, self.token):
            selector.observe(lambda _change: self.redraw(), names="value")
        self.run(layer=layer, head=head, token=token)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The widgets (a live front end shows them) plus a picture and a hint for readers without a kernel."""
        alt = "static picture of the attention explorer's first state"
        if self.attentions:
            fallback = fallback_html(self.picture(), None, EXPLORER_HINT, alt)
        else:  # nothing encoded yet: no picture to show
            fallback = f'<div class="course-viz-hint">{html.escape(EXPLORER_HINT)}</div>'
        return {
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},  # ipywidgets 7, 8
            "text/html": fallback,
            "text/plain": f"AttentionExplorer: {EXPLORER_HINT}",
        }

    def picture(self) -> bytes:
        """PNG of both pictures as they are now, side by side (the explorer's stored first state)."""
        return side_by_side_png([self.heatmap.value, self.token_plot.value])

    def run(self, layer: int | None = None, head: int | None = None, token: int | None = None) -> None:
        """Encode the text box(es) and refresh every selector and picture; errors are shown, not raised."""
        text_b = self.text_b.value if self.pair else None
        try:
            tokens, attentions = self.encode(self.text.value, text_b)
            attentions = attention_tuple(attentions)
            tokens = check_tokens(attentions, tokens)
        except Exception as error:  # a widget callback must not die silently: show what went wrong instead
            self.status.value = f"<span style='color:#b00'>Could not encode: {html.escape(str(error))}</span>"
            return
        self.tokens = tokens
        self.attentions = tuple(weights[0].detach().float().cpu() for weights in attentions)  # [heads, q, k]
        n_layers, n_heads = len(self.attentions), self.attentions[0].size(0)
        layer = min(self.layer.value if layer is None else layer, n_layers - 1)
        head = self.head.value if head is None else head
        head = head if head == MEAN_OF_HEADS or 0 <= head < n_heads else MEAN_OF_HEADS
        token = min(self.token.value if token is None else token, len(tokens) - 1)
        self._quiet = True
        try:
            self.layer.max = n_layers - 1
            self.layer.value = layer
            self.head.options = [("mean", MEAN_OF_HEADS)] + [(str(index), index) for index in range(n_heads)]
            self.head.value = head
            self.token.options = [(f"{index}: {name}", index) for index, name in enumerate(tokens)]
            self.token.value = token
        finally:
            self._quiet = False
        self.status.value = f"{len(tokens)} tokens, {n_layers} layers, {n_heads} heads"
        self.redraw()

    def redraw(self) -> None:
        """Redraw both pictures for the current layer, head and token."""
        if self._quiet or not self.attentions:
            return
        layer_weights = self.attentions[self.layer.value]  # [heads, query, key]
        head = self.head.value
        chosen = layer_weights.mean(dim=0) if head == MEAN_OF_HEADS else layer_weights[head]  # [query, key]
        self.matrix = chosen.numpy()
        self.token_matrix = layer_weights[:, self.token.value, :].numpy()  # [heads, key]
        self.heatmap.value = self._heatmap_png()
        self.token_plot.value = self._token_png()

    def _heatmap_png(self) -> bytes:
        """PNG of the chosen head's matrix with the chosen token's row outlined."""
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        self._draw_heatmap(figure.subplots())
        return figure_png(figure)

    def _token_png(self) -> bytes:
        """PNG of the chosen token's attention over the keys, one row per head of the chosen layer."""
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        self._draw_token_plot(figure.subplots())
        return figure_png(figure)

    def _draw_heatmap(self, ax) -> None:
        """The chosen head's ``[query, key]`` matrix with the chosen token's row outlined."""
        head = "mean of heads" if self.head.value == MEAN_OF_HEADS else f"head {self.head.value}"
        image = attention_heatmap(ax, self.matrix, self.tokens, self.tokens, title=f"layer {self.layer.value}, {head}")
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
        ax.axhline(self.token.value - 0.5, color="#d62728", linewidth=1.2)
        ax.axhline(self.token.value + 0.5, color="#d62728", linewidth=1.2)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")

    def _draw_token_plot(self, ax) -> None:
        """The chosen token's attention over the keys, one row per head of the chosen layer."""
        n_heads = self.token_matrix.shape[0]
        labels = [str(index) for index in range(n_heads)]
        word = self.tokens[self.token.value]
        title = f"'{word}' in every head of the layer"
        image = attention_heatmap(ax, self.token_matrix, labels, self.tokens, title=title)
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
        ax.set_aspect("auto")
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("head")
        if self.head.value != MEAN_OF_HEADS:
            ax.axhline(self.head.value - 0.5, color="#d62728", linewidth=1.2)
            ax.axhline(self.head.value + 0.5, color="#d62728", linewidth=1.2)
