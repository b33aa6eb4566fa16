"""course_lib.viz.segment_cache: the caching geometry, the static figure, the explorer's widgets and stored picture,
and the memory + segment attention it hands to AttentionExplorer."""

from __future__ import annotations

import base64
import re
from html import escape

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from course_lib.viz.segment_cache import (  # noqa: E402
    CACHED,
    CURRENT,
    EVICTED,
    EXPLORER_HINT,
    NOT_YET,
    WIDGET_VIEW,
    CachingGeometry,
    SegmentCachingExplorer,
    memory_attention_encoder,
    segment_caching_figure,
)


def data_uri_png(html: str) -> bytes:
    match = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert match, html[:200]
    return base64.b64decode(match.group(1))


def test_keys_are_the_memory_and_the_segment_up_to_the_query():
    geometry = CachingGeometry(segment_len=4, mem_len=4, n_layers=3, n_segments=5)
    assert geometry.keys_of(9) == (4, 9)     # segment 2 starts at 8: memory 4..7, then 8, 9
    assert geometry.keys_of(2) == (0, 2)     # the first segment has no memory
    assert CachingGeometry(4, 2, 3, 5).keys_of(9) == (6, 9)  # a shorter memory holds the last mem_len states
    mask = geometry.attention_mask(2)
    assert mask.shape == (4, 8)
    assert (mask[:, :4] == 1).all() and mask[0].tolist() == [1, 1, 1, 1, 2, 0, 0, 0]
    assert geometry.attention_mask(0).shape == (4, 4)  # no memory before the first segment


def test_reach_grows_by_one_segment_per_layer():
    geometry = CachingGeometry(segment_len=4, mem_len=4, n_layers=3, n_segments=5)
    assert geometry.reach(3, 3) == [0, 4, 8, 15]
    assert geometry.context_length(3, 3) == 3 * 4 + 3  # N x L plus the query's place in its segment
    assert [CachingGeometry(4, 4, layers, 6).context_length(5, 0) for layers in (1, 2, 3)] == [4, 8, 12]
    assert CachingGeometry(4, 0, 3, 5).context_length(3, 2) == 2  # no memory: only the segment itself
    with pytest.raises(ValueError, match="query must be in 0 .. 3"):
        geometry.reach(1, 4)
    with pytest.raises(ValueError, match="mem_len"):
        CachingGeometry(4, -1, 3, 5)


def test_states_mark_current_cached_evicted_and_future_cells():
    geometry = CachingGeometry(segment_len=2, mem_len=2, n_layers=2, n_segments=4)
    grid = geometry.states(2)
    assert grid.shape == (3, 8)
    assert grid[:, 4:6].tolist() == [[CURRENT] * 2] * 3
    assert grid[:2, 2:4].tolist() == [[CACHED] * 2] * 2 and grid[2, 2:4].tolist() == [EVICTED] * 2  # top: not read
    assert (grid[:, :2] == EVICTED).all() and (grid[:, 6:] == NOT_YET).all()


def test_static_figure_is_about_960_px_and_checks_its_arguments():
    from course_lib.viz.plots import figure_png

    geometry = CachingGeometry()
    png = figure_png(segment_caching_figure(geometry, 2, 1, layer=2), dpi=100)
    width = int.from_bytes(png[16:20], "big")
    assert png.startswith(b"\x89PNG") and 900 <= width <= 1000
    tokens = [f"t{i}" for i in range(geometry.length)]
    figure = segment_caching_figure(geometry, 1, tokens=tokens)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()][:3] == ["t0", "t1", "t2"]
    with pytest.raises(ValueError, match="layer must be in 1 .. 3"):
        segment_caching_figure(geometry, 1, layer=0)
    with pytest.raises(ValueError, match="tokens for a text of"):
        segment_caching_figure(geometry, 1, tokens=tokens[:3])


def test_explorer_steps_through_segments_and_redraws():
    explorer = SegmentCachingExplorer(CachingGeometry(4, 4, 3, 5), segment=1, query=2, layer=1)
    first = explorer.picture()
    assert first.startswith(b"\x89PNG") and "depends on 6 earlier tokens" in explorer.status.value
    explorer.step.click()
    assert explorer.segment.value == 2 and explorer.picture() != first
    assert "reads 4 cached states + 4 new ones" in explorer.status.value
    explorer.query.value = 3
    assert "depends on 11 earlier tokens" in explorer.status.value
    before = explorer.picture()
    explorer.layer.value = 3
    assert explorer.picture() != before
    for _ in range(3):
        explorer.next_segment()
    assert explorer.segment.value == 0 and "reads 0 cached states" in explorer.status.value  # wraps around


def test_explorer_output_carries_a_picture_of_its_first_state_and_a_hint():
    explorer = SegmentCachingExplorer(segment=2)
    bundle = explorer._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
    assert data_uri_png(bundle["text/html"]) == explorer.picture()
    assert escape(EXPLORER_HINT) in bundle["text/html"] and EXPLORER_HINT in bundle["text/plain"]
    assert "<script" not in bundle["text/html"]


def test_execute_script_keeps_the_explorer_picture_not_its_widget():
    import importlib.util
    from pathlib import Path

    import nbformat

    path = Path(__file__).resolve().parents[2] / "scripts" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    explorer = SegmentCachingExplorer()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("explorer", outputs=[
        nbformat.v4.new_output("execute_result", data=explorer._repr_mimebundle_(), execution_count=1)])]
    script.store_for_readers(nb)
    (stored,) = nb.cells[0].outputs
    assert set(stored.data) == {"text/html", "text/plain"}
    assert data_uri_png(stored.data["text/html"]).startswith(b"\x89PNG")


class WordTokenizer:
    """Words to ids, with the ``.ids`` / ``.tokens`` of a tokenizers Encoding."""

    class Encoding:
        def __init__(self, words):
            self.tokens, self.ids = words, [hash(w) % 40 for w in words]

    def encode(self, text):
        return self.Encoding(text.split())


def test_memory_attention_encoder_stacks_both_segments_into_one_square_per_layer():
    from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
    from course_lib.viz.explorer import AttentionExplorer

    torch.manual_seed(0)
    model = TransformerXLLMHeadModel(TransformerXLConfig(vocab_size=40, n_layers=2, n_heads=2, dim=16, head_dim=8,
                                                         hidden_dim=32, segment_len=4, mem_len=4)).train()
    encode = memory_attention_encoder(model, WordTokenizer(), segment_len=4)
    tokens, attentions = encode("a b c d e f g h i j")  # only the first two segments: 8 tokens
    assert tokens == list("abcdefgh") and model.training  # training mode restored
    assert len(attentions) == 2 and attentions[0].shape == (1, 2, 8, 8)
    square = attentions[0][0, 0]
    assert torch.all(square[:4, 4:] == 0)                              # segment 0: no memory, nothing to its right
    assert torch.all(square.triu(1) == 0) and torch.all(square[4:, :4] > 0)  # causal; segment 1 sees the memory
    torch.testing.assert_close(square.sum(-1), torch.ones(8))
    explorer = AttentionExplorer(encode, text="a b c d e f g h", layer=1, token=7)
    assert explorer.tokens[-1] == "h" and np.asarray(explorer.matrix).shape == (8, 8)
    with pytest.raises(ValueError, match="more than 4 tokens"):
        encode("a b c")
    with pytest.raises(ValueError, match="mem_len=4 must be at least"):
        memory_attention_encoder(model, WordTokenizer(), segment_len=5)


def test_every_title_fits_inside_the_figure():
    """The right panel is narrow: its title (layer 1 reads the embeddings) must not run past the figure's edge."""
    geometry = CachingGeometry(n_layers=3, segment_len=4, mem_len=4, n_segments=3)
    for layer in (None, 1, 3):
        figure = segment_caching_figure(geometry, segment=2, layer=layer)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        renderer = canvas.get_renderer()
        edge = figure.bbox
        for ax in figure.axes:
            box = ax.title.get_window_extent(renderer)
            assert edge.x0 <= box.x0 and box.x1 <= edge.x1, f"layer {layer}: title {ax.get_title()!r} is clipped"


def test_explorer_says_how_many_tokens_the_memory_needs_and_labels_read_alike():
    from course_lib.viz.attention_data import readable_tokens

    assert readable_tokens(["Ġthe", "Ċ", "cat"]) == ["␣the", "↵", "cat"]
    from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
    from course_lib.viz.explorer import AttentionExplorer

    torch.manual_seed(0)
    model = TransformerXLLMHeadModel(TransformerXLConfig(vocab_size=40, n_layers=1, n_heads=2, dim=16, head_dim=8,
                                                         hidden_dim=32, segment_len=4, mem_len=4))
    encode = memory_attention_encoder(model, WordTokenizer(), segment_len=4)
    explorer = AttentionExplorer(encode, text="a b c")  # too short: the error shows, and so does the note
    assert "more than 4 tokens" in explorer.note.value and "more than 4 tokens" in explorer.status.value
    assert explorer.note in explorer.widget.children
