"""An attention explorer built from ipywidgets and matplotlib only: no CDN, no ipympl, ipywidgets 7.7 and 8.

Type a text (or a sentence pair), press "Encode", then pick a layer, a head and a token. The left picture is the
chosen head's ``[query, key]`` attention matrix; the right one shows what the chosen token attends to in every head
of the layer. Pictures are PNG bytes in ``ipywidgets.Image``, so they render in JupyterLab, Notebook, Colab and VS Code.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import numpy as np
import torch
from matplotlib.figure import Figure

from course_lib.viz.attention_data import attention_tuple, check_tokens, make_encoder
from course_lib.viz.plots import attention_heatmap, figure_png

MEAN_OF_HEADS = -1  # the head selector's value for "average over all heads"


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
        for name in ("layer", "head", "token", "heatmap", "token_plot", "encode_button", "text", "text_b"):
            getattr(self, name).add_class(f"course-explorer-{name.replace('_', '-')}")

        texts = [self.text, self.text_b] if self.pair else [self.text]
        self.widget = widgets.VBox(
            [
                widgets.HBox([*texts, self.encode_button]),
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

    def _ipython_display_(self):
        """Show the widgets when the explorer is a cell's value (works on ipywidgets 7 and 8)."""
        from IPython.display import display

        display(self.widget)

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
        head = "mean of heads" if self.head.value == MEAN_OF_HEADS else f"head {self.head.value}"
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        ax = figure.subplots()
        attention_heatmap(ax, self.matrix, self.tokens, self.tokens, title=f"layer {self.layer.value}, {head}")
        ax.axhline(self.token.value - 0.5, color="#d62728", linewidth=1.2)
        ax.axhline(self.token.value + 0.5, color="#d62728", linewidth=1.2)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")
        return figure_png(figure)

    def _token_png(self) -> bytes:
        """PNG of the chosen token's attention over the keys, one row per head of the chosen layer."""
        n_heads = self.token_matrix.shape[0]
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        ax = figure.subplots()
        labels = [str(index) for index in range(n_heads)]
        word = self.tokens[self.token.value]
        attention_heatmap(ax, self.token_matrix, labels, self.tokens, title=f"'{word}' in every head of the layer")
        ax.set_aspect("auto")
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("head")
        if self.head.value != MEAN_OF_HEADS:
            ax.axhline(self.head.value - 0.5, color="#d62728", linewidth=1.2)
            ax.axhline(self.head.value + 0.5, color="#d62728", linewidth=1.2)
        return figure_png(figure)
