"""Every widget in course_lib.viz constructs and reacts on the ipywidgets it finds: 8.x here, 7.7.1 on Colab.

README's test command runs this file on ipywidgets 8; ``scripts/colab_check.sh`` copies it out of the checkout and
runs it again in a Python 3.12 venv with ipywidgets==7.7.1 and course_lib installed from a wheel (it sets
``COURSE_EXPECT_IPYWIDGETS=7.7.1``, so the run fails if another version was picked up). The file is self-contained:
it imports nothing from the checkout but course_lib, so it runs unchanged outside it.

"Reacts" means what a front end would see: moving a slider or picking from a dropdown programmatically (as dragging
does) changes the Python-side numbers and the PNG bytes of the picture, and the widget state that ipywidgets sends
to the front end (``get_state``) carries the new picture.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")

import course_lib.viz  # noqa: E402
from course_lib.viz.explorer import MEAN_OF_HEADS, WIDGET_VIEW, AttentionExplorer  # noqa: E402

VERSION = tuple(int(part) for part in re.findall(r"\d+", ipywidgets.__version__)[:2])
# The course_lib.viz modules that build ipywidgets, each tested below; a new one must be added here (and tested).
WIDGET_MODULES = {"explorer", "segment_cache", "token_neighbours"}


def sent_png(image) -> bytes:
    """The PNG an ``ipywidgets.Image`` would send to the front end now (bytes on 7, a memoryview on 8)."""
    return bytes(image.get_state()["value"])


def own_view_spec(widget) -> dict:
    """The widget-view entry that this ipywidgets version itself puts in a widget's output."""
    if hasattr(widget, "_repr_mimebundle_"):  # ipywidgets 8
        bundle = widget._repr_mimebundle_()
    else:  # ipywidgets 7 displays a widget through _ipython_display_, which calls display(bundle, raw=True)
        shown = []
        with mock.patch.object(importlib.import_module("ipywidgets.widgets.widget"), "display",
                               lambda data, raw=False: shown.append(data)):
            widget._ipython_display_()
        (bundle,) = shown
    return bundle[WIDGET_VIEW]


def displayed(obj) -> dict:
    """What IPython's display() sends to the front end for ``obj`` (the explorers are not widgets themselves)."""
    from IPython.core.formatters import DisplayFormatter

    data, _metadata = DisplayFormatter().format(obj)
    return data


def random_attentions(layers=3, heads=4, tokens=5, seed=0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, heads, tokens, tokens, generator=generator).softmax(-1) for _ in range(layers))


def fake_encoder(calls: list):
    """encode(text, text_b) -> word tokens and seeded random attention (3 layers, 4 heads)."""

    def encode(text, text_b=None):
        calls.append((text, text_b))
        tokens = text.split() + (text_b.split() if text_b else [])
        if not tokens:
            raise ValueError("empty text")
        return tokens, random_attentions(tokens=len(tokens), seed=len(tokens))

    return encode


def test_ipywidgets_is_the_version_this_run_is_about():
    expected = os.environ.get("COURSE_EXPECT_IPYWIDGETS")
    if expected:  # set by scripts/colab_check.sh: prove the 7.7.1 run really ran on 7.7.1
        assert ipywidgets.__version__ == expected
    assert VERSION[0] in (7, 8), f"course_lib's widgets are made for ipywidgets 7.7+ and 8, found {VERSION}"


def test_every_widget_module_of_course_lib_viz_is_tested_here():
    viz = Path(course_lib.viz.__file__).parent
    building = {path.stem for path in viz.glob("*.py") if re.search(r"^\s*import ipywidgets", path.read_text(), re.M)}
    assert building == WIDGET_MODULES, "a course_lib.viz module builds widgets: test it in tests/viz/test_widgets.py"


def test_attention_explorer_constructs_and_reacts_to_its_selectors():
    calls = []
    explorer = AttentionExplorer(fake_encoder(calls), text="the cat sat on the mat")
    expected = random_attentions(tokens=6, seed=6)
    assert isinstance(explorer.widget, ipywidgets.VBox) and calls == [("the cat sat on the mat", None)]
    assert (explorer.layer.min, explorer.layer.max, explorer.head.value) == (0, 2, MEAN_OF_HEADS)
    first = sent_png(explorer.heatmap)
    assert first.startswith(b"\x89PNG") and bytes(explorer.heatmap.value) == first

    explorer.layer.value = 2  # what dragging the slider does
    np.testing.assert_allclose(explorer.matrix, expected[2][0].mean(0).numpy(), rtol=1e-6)
    moved = sent_png(explorer.heatmap)
    assert moved != first and moved.startswith(b"\x89PNG")

    explorer.head.value = 3
    np.testing.assert_allclose(explorer.matrix, expected[2][0, 3].numpy())
    assert sent_png(explorer.heatmap) != moved

    token_png = sent_png(explorer.token_plot)
    explorer.token.value = 4
    np.testing.assert_allclose(explorer.token_matrix, expected[2][0, :, 4, :].numpy())  # [heads, key]
    assert sent_png(explorer.token_plot) != token_png
    assert explorer.token.options[4] == ("4: the", 4)
    assert explorer.status.get_state()["value"] == "6 tokens, 3 layers, 4 heads"


def test_attention_explorer_encodes_a_new_pair_on_click():
    calls = []
    explorer = AttentionExplorer(fake_encoder(calls), text="the cat", text_b="it sat", layer=1, token=3)
    before = sent_png(explorer.heatmap)
    explorer.text.value, explorer.text_b.value = "a dog ran", "it was tired"
    explorer.encode_button.click()  # what a click in the front end does
    assert calls[-1] == ("a dog ran", "it was tired")
    assert explorer.tokens == "a dog ran it was tired".split() and explorer.layer.value == 1
    assert sent_png(explorer.heatmap) != before


def test_attention_explorer_output_names_its_widget_as_this_ipywidgets_does():
    explorer = AttentionExplorer(fake_encoder([]), text="the cat sat")
    bundle = displayed(explorer)
    assert bundle[WIDGET_VIEW] == own_view_spec(explorer.widget)  # a live front end shows the explorer's VBox
    assert bundle["text/html"] and bundle["text/plain"].startswith("AttentionExplorer")


def test_segment_caching_explorer_constructs_and_reacts():
    segment_cache = pytest.importorskip("course_lib.viz.segment_cache")
    explorer = segment_cache.SegmentCachingExplorer(segment_cache.CachingGeometry(4, 4, 3, 5), segment=1, query=2)
    first, status = sent_png(explorer.image), explorer.status.get_state()["value"]
    assert first.startswith(b"\x89PNG") and explorer.picture() == first

    explorer.segment.value = 3  # dragging the slider
    assert sent_png(explorer.image) != first and explorer.status.get_state()["value"] != status
    before = sent_png(explorer.image)
    explorer.layer.value = 3
    assert sent_png(explorer.image) != before
    explorer.step.click()  # "Next segment"
    assert explorer.segment.value == 4
    assert displayed(explorer)[WIDGET_VIEW] == own_view_spec(explorer.widget)


def test_neighbour_explorer_constructs_and_reacts():
    token_neighbours = pytest.importorskip("course_lib.viz.token_neighbours")
    generator = torch.Generator().manual_seed(0)
    layers = torch.randn(3, 6, 8, generator=generator)
    layers[0, 4] = layers[0, 1]                              # the same word twice: identical in the token layer
    tokens = ["a", "stick", "and", "a", "stick", "."]
    explorer = token_neighbours.NeighbourExplorer(layers, tokens, ["token", "LSTM 1", "LSTM 2"],
                                                  mix_weights=[0.2, 0.3, 0.5], word=1, top=3)
    first, status = sent_png(explorer.image), explorer.status.get_state()["value"]
    assert first.startswith(b"\x89PNG") and explorer.picture() == first
    assert "token: &#x27;stick&#x27; (1.00)" in status       # the other "stick" is nearest in the token layer
    explorer.word.value = 2                                  # picking another word
    assert sent_png(explorer.image) != first and explorer.status.get_state()["value"] != status
    shown = displayed(explorer)
    assert shown[WIDGET_VIEW] == own_view_spec(explorer.widget)
    assert "data:image/png;base64" in shown["text/html"] and "running kernel" in shown["text/html"]
    nearest = token_neighbours.nearest_tokens(layers, 1, top=2, mix_weights=[0.2, 0.3, 0.5])
    assert len(nearest) == 4 and nearest[0][0][0] == 4 and all(1 not in [i for i, _ in r] for r in nearest)
    with pytest.raises(ValueError, match="layer names"):
        token_neighbours.NeighbourExplorer(layers, tokens, ["token"])
