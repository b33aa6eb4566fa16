"""bertviz's head view and model view (Vig 2019, "A Multiscale Visualization of Attention in the Transformer Model").

What these wrappers add to ``bertviz.head_view`` / ``bertviz.model_view``:

- they take a whole batch (any course_lib or Hugging Face output, or its ``attentions`` tuple) and show one example;
- they round the weights (3 decimals by default), so a notebook that stores the view stays small;
- they emit ONE HTML output whose script waits for require.js (loading it when the page has none) before bertviz's
  own script runs. bertviz adds ``<script src=require.js>`` and its drawing script as separate outputs; in a fresh
  JupyterLab tab the drawing script often runs before require.js arrived ("require is not defined") and nothing is
  drawn. The classic Notebook already has require.js, Colab and JupyterLab do not.

- until bertviz has drawn, the output shows a static picture of the view's first state and a one-line hint
  (``course_lib.viz.view_pictures``): a fresh clone is untrusted, JupyterLab strips its scripts and the view's
  drop-downs would stay empty. The view's own controls stay hidden until its SVG exists.

bertviz loads d3 and jQuery from cdnjs at view time; offline, use ``course_lib.viz.explorer`` (no CDN).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from IPython.display import HTML, display
from matplotlib.figure import Figure

from course_lib.viz.attention_data import check_sentence_b_start, check_tokens, one_example, rounded
from course_lib.viz.view_pictures import (
    BERTVIZ_HINT,
    compact_png,
    fallback_html,
    head_view_figure,
    model_view_figure,
)

HEAD_VIEW_DPI = 130  # the head view's static picture: 4.6 in wide -> about 600 px

# The same copy of require.js that bertviz itself asks for.
REQUIREJS_URL = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js"

_SCRIPT_OPEN = '\n<script type="text/javascript">\n'
_SCRIPT_CLOSE = "\n</script>\n"

# Runs `draw` (bertviz's script) once `requirejs` exists; loads require.js at most once per page. As soon as bertviz
# has drawn its SVG, the view ("live-<root_id>") is shown and the static picture ("fallback-<root_id>") hidden.
# The model view draws 970 px wide whatever the page: `fit` scales such a drawing down to its output's width (else
# JupyterLab's ~850 px output area cuts off the 12th head column).
_LOADER = """(function () {
  var root = document.getElementById("%(root_id)s");
  var live = document.getElementById("live-%(root_id)s");
  var fallback = document.getElementById("fallback-%(root_id)s");
  var pixels = /^[0-9.]+$/;
  function fit(svg) {
    var width = svg.getAttribute("width"), height = svg.getAttribute("height");
    if (pixels.test(width) && pixels.test(height) && !svg.hasAttribute("viewBox")) {
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      svg.style.maxWidth = "100%%";
      svg.style.height = "auto";
    }
  }
  function update() {
    if (!root || !root.querySelector("svg")) { return; }
    if (live) { live.style.display = ""; }
    if (fallback) { fallback.style.display = "none"; }
    root.querySelectorAll("#vis > svg").forEach(fit);
  }
  if (root) {
    update();
    new MutationObserver(update).observe(root, {childList: true, subtree: true});
  }
  function draw() {
%(script)s
  }
  function run() {
    try { draw(); } catch (err) { report("bertviz could not draw: " + err); }
  }
  function report(message) {
    console.error(message);
    var shown = fallback || root;
    if (shown) { shown.insertAdjacentText("beforeend", " " + message); }
  }
  if (typeof window.requirejs === "function" && typeof window.require === "function") { run(); return; }
  if (!window.courseLibRequirejs) {
    window.courseLibRequirejs = new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = "%(require_url)s";
      tag.onload = resolve;
      tag.onerror = function () { window.courseLibRequirejs = null; reject(new Error(tag.src)); };
      document.head.appendChild(tag);
    });
  }
  window.courseLibRequirejs.then(run, function (err) {
    report("Could not load require.js from " + err.message + " (offline?). " +
           "course_lib.viz.explorer.AttentionExplorer works without internet.");
  });
})();"""


def wrap_with_require_loader(script: str, root_id: str, require_url: str = REQUIREJS_URL) -> str:
    """A ``<script>`` that runs ``script`` once require.js is loaded (``root_id``: the view's div)."""
    script = script.replace("</", "<\\/")  # a token such as "</script>" must not end the tag early
    body = _LOADER % {"root_id": root_id, "script": script, "require_url": require_url}
    return f'<script type="text/javascript">\n{body}\n</script>'


def with_fallback(view: str, script: str, root_id: str, picture: Figure, hint: str = BERTVIZ_HINT,
                  dpi: int = 80) -> str:
    """One output: the static picture + hint, the view's HTML (hidden until drawn), its script behind the loader."""
    alt = "static picture of the bertviz view's first state"
    return (fallback_html(compact_png(picture, dpi=dpi), f"fallback-{root_id}", hint, alt)
            + f'<div id="live-{root_id}" style="display:none">{view}</div>'
            + wrap_with_require_loader(script, root_id))


def _split_bertviz_html(page: str) -> tuple[str, str]:
    """Split bertviz's ``html_action='return'`` page into (the view's div, bertviz's drawing script)."""
    start = page.find("<div id=")
    script_at = page.rfind(_SCRIPT_OPEN)
    if start < 0 or script_at < start or not page.endswith(_SCRIPT_CLOSE):
        raise RuntimeError("this bertviz version lays out its HTML differently from bertviz 1.4; please report it")
    return page[start:script_at], page[script_at + len(_SCRIPT_OPEN) : -len(_SCRIPT_CLOSE)]


def _compact_params(script: str) -> str:
    """Re-write the ``const params = {...}`` literal without the space after each comma (one byte per weight)."""
    marker = "const params = "
    start = script.index(marker) + len(marker)
    params, length = json.JSONDecoder().raw_decode(script[start:])
    return script[:start] + json.dumps(params, separators=(",", ":")) + script[start + length :]


def _root_id(div: str) -> str:
    """The ``bertviz-<hex>`` id of the view's outer div."""
    return div.split('"', 2)[1]


def _prepare(source: Any, tokens: Sequence[str], example: int, sentence_b_start: int | None, decimals: int | None):
    """One example's rounded attentions and its checked tokens."""
    attentions = rounded(one_example(source, example), decimals)  # per layer [1, heads, query, key]
    tokens = check_tokens(attentions, tokens)
    check_sentence_b_start(tokens, sentence_b_start)
    return attentions, tokens


def _check_indices(name: str, indices: Sequence[int] | None, limit: int) -> list[int] | None:
    """Validate optional layer/head indices against ``limit``."""
    if indices is None:
        return None
    indices = [int(index) for index in indices]
    bad = [index for index in indices if not 0 <= index < limit]
    if not indices or bad:
        raise ValueError(f"{name} must be a non-empty list of indices in 0..{limit - 1}, got {indices}")
    return indices


def head_view_html(
    source: Any,
    tokens: Sequence[str],
    *,
    example: int = 0,
    sentence_b_start: int | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    decimals: int | None = 3,
) -> str:
    """HTML of bertviz's head view: every head of one layer as lines from each token to the tokens it attends to.

    ``example``: which row of the batch; ``sentence_b_start``: index of sentence B's first token (adds the
    A->B / B->A filters); ``layer``: the layer shown first; ``heads``: the heads selected at first; ``layers``: the
    layers included (fewer layers, smaller notebook); ``decimals``: rounding of the stored weights (None: none).
    """
    import bertviz

    attentions, tokens = _prepare(source, tokens, example, sentence_b_start, decimals)
    n_layers, n_heads = len(attentions), attentions[0].size(1)
    layers = _check_indices("layers", layers, n_layers)
    heads = _check_indices("heads", heads, n_heads)
    if layer is not None and layer not in (layers if layers is not None else range(n_layers)):
        raise ValueError(f"layer={layer} is not among the shown layers {layers or list(range(n_layers))}")
    page = bertviz.head_view(
        attentions, tokens, sentence_b_start=sentence_b_start, layer=layer, heads=heads,
        include_layers=layers, html_action="return",
    ).data
    div, script = _split_bertviz_html(page)
    first_layer = layer if layer is not None else (layers or [0])[0]
    picture = head_view_figure(attentions[first_layer][0], tokens, tokens, heads or range(n_heads), first_layer)
    # The head view's picture is narrow (one layer, two token columns): drawn at HEAD_VIEW_DPI it reads at about the
    # size bertviz draws it (~600 px wide), where 80 dpi gave ~370 px of faint lines.
    return with_fallback(div, _compact_params(script), _root_id(div), picture, dpi=HEAD_VIEW_DPI)


def model_view_html(
    source: Any,
    tokens: Sequence[str],
    *,
    example: int = 0,
    sentence_b_start: int | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    display_mode: str = "light",
    decimals: int | None = 3,
) -> str:
    """HTML of bertviz's model view: a thumbnail per (layer, head); click one to enlarge it.

    ``layers`` / ``heads`` keep only those rows / columns of thumbnails; other options as in :func:`head_view_html`.
    """
    import bertviz

    if display_mode not in ("light", "dark"):
        raise ValueError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    attentions, tokens = _prepare(source, tokens, example, sentence_b_start, decimals)
    layers = _check_indices("layers", layers, len(attentions))
    heads = _check_indices("heads", heads, attentions[0].size(1))
    page = bertviz.model_view(
        attentions, tokens, sentence_b_start=sentence_b_start, display_mode=display_mode,
        include_layers=layers, include_heads=heads, html_action="return",
    ).data
    div, script = _split_bertviz_html(page)
    layers = layers or list(range(len(attentions)))
    heads = heads or list(range(attentions[0].size(1)))
    picture = model_view_figure([attentions[layer][0][heads] for layer in layers], layers, heads)
    return with_fallback(div, _compact_params(script), _root_id(div), picture)


def head_view(source: Any, tokens: Sequence[str], **options: Any) -> None:
    """Show bertviz's head view of one example in the notebook (options: see :func:`head_view_html`)."""
    display(HTML(head_view_html(source, tokens, **options)))


def model_view(source: Any, tokens: Sequence[str], **options: Any) -> None:
    """Show bertviz's model view of one example in the notebook (options: see :func:`model_view_html`)."""
    display(HTML(model_view_html(source, tokens, **options)))


def params_of(html: str) -> dict:
    """The JSON parameters bertviz embedded in a view's HTML (weights, tokens): for tests and curious students."""
    marker = "const params = "
    start = html.index(marker) + len(marker)
    params, _ = json.JSONDecoder().raw_decode(html[start:])  # JSON reads the escaped "<\/" as "</"
    return params
