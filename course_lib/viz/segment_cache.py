"""Transformer-XL's segment caching, drawn: what is computed, what is read from the cache, how far back it sees.

A long text is read in segments of ``segment_len`` tokens. Layer n attends over ``[memory; segment]``: the memory is
the last ``mem_len`` hidden states of layer n-1, computed while reading earlier segments, cached and frozen
(stop-gradient). A state therefore depends on tokens up to ``mem_len`` back in the layer below, which depend on
tokens further back in the layer below them: the context a top-layer token can reach grows by up to ``mem_len``
tokens per layer, about ``n_layers x segment_len`` tokens when ``mem_len = segment_len`` (Dai et al. 2019, Sec. 3.2,
Fig. 2).

- :class:`CachingGeometry` holds the sizes and answers "which keys does a query read?" and "how far back does it
  reach?" (no model needed);
- :func:`segment_caching_figure` draws one step as a static figure (for the notebook read on GitHub);
- :class:`SegmentCachingExplorer` is the same picture with widgets (ipywidgets + matplotlib PNGs, no CDN), stepping
  segment by segment; like ``AttentionExplorer`` it stores a picture of its first state for readers without a kernel;
- :func:`memory_attention_encoder` gives ``AttentionExplorer`` a Transformer-XL's attention over memory + segment.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from course_lib.viz.attention_data import readable_tokens
from course_lib.viz.plots import figure_png
from course_lib.viz.view_pictures import fallback_html

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXPLORER_HINT = ("Picture of the segment-caching explorer as it first appears. To step through the segments, run "
                 "the cells above, then this one (the widgets need a running kernel).")

# Cell states of the picture, in the order of the colour map.
NOT_YET, EVICTED, CACHED, CURRENT = 0, 1, 2, 3
STATE_NAMES = ("not read yet", "evicted (no longer cached)", "cached memory (frozen, no gradient)",
               "current segment (computed now)")
COLORS = ("#ffffff", "#e6e6e6", "#f5b971", "#6baed6")
REACH_COLOR = "#d62728"
DPI = 100  # the explorer's pictures: 960 px wide


@dataclass(frozen=True)
class CachingGeometry:
    """Sizes of a segment-by-segment reading: ``n_segments`` segments of ``segment_len``, ``n_layers`` layers."""

    segment_len: int = 4
    mem_len: int = 4
    n_layers: int = 3
    n_segments: int = 5

    def __post_init__(self) -> None:
        for name in ("segment_len", "n_layers", "n_segments"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if type(self.mem_len) is not int or self.mem_len < 0:
            raise ValueError(f"mem_len must be a non-negative int, got {self.mem_len!r}")

    @property
    def length(self) -> int:
        """Tokens in the whole text."""
        return self.segment_len * self.n_segments

    def segment_start(self, position: int) -> int:
        """First position of the segment that holds ``position``."""
        return position // self.segment_len * self.segment_len

    def keys_of(self, position: int) -> tuple[int, int]:
        """First and last position (inclusive) of the layer-below states that the query at ``position`` attends to.

        The memory holds the ``mem_len`` states before its segment (fewer at the start of the text); within the
        segment, the causal mask stops at the query itself.
        """
        return max(0, self.segment_start(position) - self.mem_len), position

    def reach(self, segment: int, query: int) -> list[int]:
        """For rows 0 (embeddings) .. n_layers: the first position the top state of ``query`` depends on.

        ``query`` counts from the start of ``segment``. Row n_layers is the query itself; each row below reaches
        back to the keys of the earliest position reached in the row above.
        """
        self._check(segment, query)
        first = [0] * (self.n_layers + 1)
        first[self.n_layers] = segment * self.segment_len + query
        for row in range(self.n_layers, 0, -1):
            first[row - 1] = self.keys_of(first[row])[0]
        return first

    def context_length(self, segment: int, query: int) -> int:
        """How many tokens before the query its top-layer state can depend on (the dependency length)."""
        first = self.reach(segment, query)
        return first[-1] - first[0]

    def states(self, segment: int) -> np.ndarray:
        """``[n_layers + 1, length]`` cell states while ``segment`` is read (rows: embeddings, then every layer)."""
        self._check(segment, 0)
        start, end = segment * self.segment_len, (segment + 1) * self.segment_len
        grid = np.full((self.n_layers + 1, self.length), NOT_YET, dtype=int)
        grid[:, :start] = EVICTED
        grid[:self.n_layers, max(0, start - self.mem_len):start] = CACHED  # read by the layer above
        grid[:, start:end] = CURRENT
        return grid

    def attention_mask(self, segment: int) -> np.ndarray:
        """``[segment_len, memory + segment_len]``: 0 hidden, 1 a memory key (cached), 2 a key of the segment."""
        self._check(segment, 0)
        memory = min(self.mem_len, segment * self.segment_len)
        i, j = np.arange(self.segment_len)[:, None], np.arange(memory + self.segment_len)[None, :]
        return np.where(j < memory, 1, np.where(j <= i + memory, 2, 0))

    def _check(self, segment: int, query: int) -> None:
        if not 0 <= segment < self.n_segments:
            raise ValueError(f"segment must be in 0 .. {self.n_segments - 1}, got {segment}")
        if not 0 <= query < self.segment_len:
            raise ValueError(f"query must be in 0 .. {self.segment_len - 1} (a position inside the segment), got "
                             f"{query}")


def _labels(tokens: Sequence[str] | None, geometry: CachingGeometry) -> list[str] | None:
    if tokens is None:
        return None
    tokens = [str(token) for token in tokens]
    if len(tokens) < geometry.length:
        raise ValueError(f"{len(tokens)} tokens for a text of {geometry.length} positions")
    return tokens[:geometry.length]


def draw_cache(ax, geometry: CachingGeometry, segment: int, query: int, layer: int | None = None,
               tokens: Sequence[str] | None = None) -> None:
    """Left panel: positions x rows, coloured by state, with the chosen query's reach outlined row by row."""
    grid = geometry.states(segment)
    ax.imshow(grid, cmap=ListedColormap(COLORS), vmin=0, vmax=len(COLORS) - 1, aspect="auto", origin="lower",
              interpolation="nearest")
    rows, length = grid.shape
    for boundary in range(0, length + 1, geometry.segment_len):
        ax.axvline(boundary - 0.5, color="#555555", linewidth=0.8)
    ax.set_xticks(np.arange(length) + 0.0, minor=True)
    ax.grid(which="minor", axis="x", color="white", linewidth=0.4)
    first = geometry.reach(segment, query)
    position = segment * geometry.segment_len + query
    for row, start in enumerate(first):
        ax.add_patch(Rectangle((start - 0.5, row - 0.42), position - start + 1, 0.84, fill=False,
                               edgecolor=REACH_COLOR, linewidth=1.6))
    ax.plot([position], [rows - 1], marker="*", color=REACH_COLOR, markersize=12)
    if layer is not None:  # the chosen layer's keys: the row below it, memory + segment up to the query
        low, high = geometry.keys_of(position)
        ax.add_patch(Rectangle((low - 0.5, layer - 1 - 0.48), high - low + 1, 0.96, fill=False, edgecolor="black",
                               linewidth=1.4, linestyle="--"))
    labels = _labels(tokens, geometry)
    if labels is not None:
        ax.set_xticks(range(length), labels, rotation=90, fontsize=7)
    else:
        centres = [s * geometry.segment_len + (geometry.segment_len - 1) / 2 for s in range(geometry.n_segments)]
        ax.set_xticks(centres, [f"segment {s}" for s in range(geometry.n_segments)], fontsize=8)
    ax.set_yticks(range(rows), ["embeddings"] + [f"layer {n}" for n in range(1, rows)], fontsize=8)
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_xlabel("position in the text")
    context = position - first[0]
    ax.set_title(f"reading segment {segment}: token {position} (star) depends on {context} earlier tokens",
                 fontsize=9)


def draw_keys(ax, geometry: CachingGeometry, segment: int, query: int, layer: int | None = None) -> None:
    """Right panel: the ``[query, key]`` mask of the segment, memory keys and segment keys in their colours."""
    mask = geometry.attention_mask(segment)
    colours = ListedColormap([COLORS[NOT_YET], COLORS[CACHED], COLORS[CURRENT]])
    ax.imshow(mask, cmap=colours, vmin=0, vmax=2, interpolation="nearest")
    memory = mask.shape[1] - geometry.segment_len
    ax.axvline(memory - 0.5, color="#555555", linewidth=1.0)
    ax.add_patch(Rectangle((-0.5, query - 0.5), mask.shape[1], 1, fill=False, edgecolor=REACH_COLOR, linewidth=1.6))
    start = segment * geometry.segment_len
    ax.set_xticks(range(mask.shape[1]), [str(start - memory + k) for k in range(mask.shape[1])], fontsize=7,
                  rotation=90)
    ax.set_yticks(range(geometry.segment_len), [str(start + q) for q in range(geometry.segment_len)], fontsize=7)
    ax.set_xlabel("key (memory | segment)")
    ax.set_ylabel("query position")
    below = "the embeddings" if layer in (None, 1) else f"layer {layer - 1}"
    ax.set_title(f"{'every layer' if layer is None else f'layer {layer}'}: keys from\n{below},\n"
                 f"{memory} cached + {geometry.segment_len} new", fontsize=9)  # short lines: the panel is narrow


def segment_caching_figure(geometry: CachingGeometry, segment: int, query: int | None = None,
                           layer: int | None = None, tokens: Sequence[str] | None = None) -> Figure:
    """One step of the reading as a static figure (960 px wide at 100 dpi): the cache and the keys."""
    query = geometry.segment_len - 1 if query is None else query
    if layer is not None and not 1 <= layer <= geometry.n_layers:
        raise ValueError(f"layer must be in 1 .. {geometry.n_layers}, got {layer}")
    figure = Figure(figsize=(9.6, 3.4 if tokens is None else 3.9), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[3.2, 1])
    draw_cache(left, geometry, segment, query, layer, tokens)
    draw_keys(right, geometry, segment, query, layer)
    handles = [Patch(facecolor=c, edgecolor="#999999", label=n) for c, n in zip(COLORS[1:], STATE_NAMES[1:])]
    handles.append(Patch(facecolor="none", edgecolor=REACH_COLOR, label="what the starred token can depend on"))
    if layer is not None:
        handles.append(Patch(facecolor="none", edgecolor="black", linestyle="--",
                             label=f"the keys layer {layer} reads for it"))
    figure.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return figure


class SegmentCachingExplorer:
    """Widgets that step through a text segment by segment: the cache, the keys and the reach of one query."""

    def __init__(self, geometry: CachingGeometry | None = None, *, segment: int = 1, query: int | None = None,
                 layer: int = 1, tokens: Sequence[str] | None = None):
        import ipywidgets as widgets

        self.geometry = geometry or CachingGeometry()
        self.tokens = _labels(tokens, self.geometry)
        g = self.geometry
        self.segment = widgets.IntSlider(value=segment, min=0, max=g.n_segments - 1, description="Segment",
                                         continuous_update=False)
        self.query = widgets.IntSlider(value=g.segment_len - 1 if query is None else query, min=0,
                                       max=g.segment_len - 1, description="Query", continuous_update=False)
        self.layer = widgets.IntSlider(value=layer, min=1, max=g.n_layers, description="Layer",
                                       continuous_update=False)
        self.step = widgets.Button(description="Next segment", button_style="primary")
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML(value="")
        for name in ("segment", "query", "layer", "step", "image"):
            getattr(self, name).add_class(f"course-caching-{name}")
        self.widget = widgets.VBox([widgets.HBox([self.segment, self.query, self.layer, self.step]), self.image,
                                    self.status])
        self.widget.add_class("course-caching-explorer")
        self.step.on_click(lambda _button: self.next_segment())
        for selector in (self.segment, self.query, self.layer):
            selector.observe(lambda _change: self.redraw(), names="value")
        self.redraw()

    def next_segment(self) -> None:
        """Read the next segment (back to the first after the last)."""
        self.segment.value = (self.segment.value + 1) % self.geometry.n_segments

    def redraw(self) -> None:
        """Draw the picture for the chosen segment, query and layer; say what is cached and how far back it sees."""
        g, segment, query = self.geometry, self.segment.value, self.query.value
        figure = segment_caching_figure(g, segment, query, self.layer.value, self.tokens)
        self.image.value = figure_png(figure, dpi=DPI)
        memory = min(g.mem_len, segment * g.segment_len)
        self.status.value = html.escape(
            f"segment {segment}: every layer reads {memory} cached states + {g.segment_len} new ones; the starred "
            f"token depends on {g.context_length(segment, query)} earlier tokens (at most n_layers x mem_len = "
            f"{g.n_layers * g.mem_len} + its place in the segment).")

    def picture(self) -> bytes:
        """PNG of the picture as it is now (the explorer's stored first state)."""
        return bytes(self.image.value)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The widgets (a live front end shows them) plus a picture and a hint for readers without a kernel."""
        alt = "static picture of the segment-caching explorer's first state"
        return {
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
            "text/html": fallback_html(self.picture(), None, EXPLORER_HINT, alt),
            "text/plain": f"SegmentCachingExplorer: {EXPLORER_HINT}",
        }


def memory_attention_encoder(model, tokenizer, segment_len: int):
    """``encode(text, text_b=None)`` for ``AttentionExplorer``: attention of a Transformer-XL over memory + segment.

    The text's first ``2 * segment_len`` tokens are read as two segments; the first fills the memory, the second
    attends over ``[memory; segment]``. The explorer needs one square ``[query, key]`` matrix per layer, so the
    rows of both segments are stacked: segment 0's queries see only segment 0 (no memory yet), segment 1's see
    the memory (the states of segment 0) and themselves. Needs ``mem_len >= segment_len``.
    """
    import torch

    if model.config.mem_len < segment_len:
        raise ValueError(f"mem_len={model.config.mem_len} must be at least segment_len={segment_len}")

    def encode(text: str, text_b: str | None = None):
        encoding = tokenizer.encode(text if text_b is None else f"{text} {text_b}")
        ids = torch.tensor([encoding.ids[:2 * segment_len]], device=model.transformer.token_embedding.weight.device)
        if ids.size(1) <= segment_len:
            raise ValueError(f"need more than {segment_len} tokens (two segments), got {ids.size(1)}")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                first = model(ids[:, :segment_len], output_attentions=True)
                second = model(ids[:, segment_len:], mems=first.mems, output_attentions=True)
        finally:
            model.train(was_training)
        n_first, n_second = segment_len, ids.size(1) - segment_len
        attentions = []
        for before, after in zip(first.attentions, second.attentions):  # [1, heads, q, k] each
            square = before.new_zeros(1, before.size(1), n_first + n_second, n_first + n_second)
            square[:, :, :n_first, :n_first] = before
            square[:, :, n_first:, n_first + n_second - after.size(-1):] = after  # keys: [memory; segment 1]
            attentions.append(square.cpu())
        return readable_tokens(encoding.tokens[:ids.size(1)]), tuple(attentions)

    encode.note = (f"Needs more than {segment_len} tokens: the first {segment_len} fill the memory, the next "
                   f"{segment_len} attend over it.")  # shown under the explorer's text box
    return encode
