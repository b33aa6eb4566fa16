"""bertviz's neuron view for course_lib models: the query and key vectors behind one head's attention (Vig 2019).

For each token the view shows its query q, every key k, the product q * k element by element, the score q.k and the
softmax over the keys (Vaswani et al. 2017, Eq. 1). bertviz computes q and k with its own copy of old Hugging Face
models; here they are read from a course_lib model with forward hooks on each ``MultiHeadAttention``'s ``query``
and ``key`` projections (the projections' outputs, split into heads exactly as the model splits them). Until the
script runs, the output shows a static picture of the chosen head's attention (``course_lib.viz.view_pictures``).
"""

from __future__ import annotations

import json
import uuid
from importlib import resources
from typing import Any

import torch
from IPython.display import HTML, display

from course_lib.viz.attention_data import check_sentence_b_start, rounded, sentence_b_start_from_type_ids, tokenize
from course_lib.viz.bertviz_views import with_fallback
from course_lib.viz.view_pictures import neuron_view_figure

# The controls bertviz's neuron_view.js expects inside its root div (same ids as bertviz.neuron_view.show).
_CONTROLS = """<div id="{root_id}" style="padding:8px;font-family:'Helvetica Neue', Helvetica, Arial, sans-serif;">
  <span style="user-select:none">
    <span class="dropdown-label">Layer: </span><select id="layer"></select>
    <span class="dropdown-label">Head: </span> <select id="att_head"></select>
    {pair_filter}
  </span>
  <div id='vis'></div>
</div>"""
_PAIR_FILTER = """<span class="dropdown-label">Attention: </span><select id="filter">
      <option value="all">All</option>
      <option value="aa">Sentence A -> Sentence A</option>
      <option value="ab">Sentence A -> Sentence B</option>
      <option value="ba">Sentence B -> Sentence A</option>
      <option value="bb">Sentence B -> Sentence B</option>
    </select>"""


def _keep_heads(store: list, attention: torch.nn.Module):
    """A forward hook for a projection: appends its output split into heads, ``[batch, heads, tokens, head_dim]``."""

    def hook(_projection, _inputs, output):
        store.append(attention.split_heads(output))

    return hook


def _first_example(tensors, decimals: int | None) -> tuple[torch.Tensor, ...]:
    """``[batch, heads, ...]`` per layer -> the first example's ``[heads, ...]``, on the CPU, rounded."""
    return rounded([tensor[0].float().cpu() for tensor in tensors], decimals)


@torch.no_grad()
def queries_keys_attentions(model: torch.nn.Module, input_ids: torch.Tensor, **inputs: Any):
    """Run ``model`` once; per layer ``query``, ``key`` ``[batch, heads, tokens, head_dim]`` and attention weights."""
    from course_lib.blocks.attention import MultiHeadAttention

    captured: dict[str, list[torch.Tensor]] = {"query": [], "key": []}
    handles = []
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            for name in ("query", "key"):
                hook = _keep_heads(captured[name], module)
                handles.append(getattr(module, name).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        output = model(input_ids, output_attentions=True, **inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    attentions = getattr(output, "attentions", None)
    if attentions is None or len(captured["query"]) != len(attentions):
        found = len(captured["query"])
        raise ValueError(
            f"the neuron view needs a course_lib model whose layers use course_lib.blocks.attention."
            f"MultiHeadAttention; found {found} such attention calls for "
            f"{'no' if attentions is None else len(attentions)} attention layers"
        )
    return tuple(captured["query"]), tuple(captured["key"]), tuple(attentions)


def _filters(tokens: list[str], sentence_b_start: int | None, attn, queries, keys) -> dict:
    """bertviz's data layout (``bertviz.neuron_view.get_attention``): 'all' plus the four sentence-pair blocks."""

    def block(rows: slice, cols: slice) -> dict:
        return {
            "attn": [layer[:, rows, cols].tolist() for layer in attn],  # per layer [heads, query, key]
            "queries": [layer[:, rows].tolist() for layer in queries],  # per layer [heads, query, head_dim]
            "keys": [layer[:, cols].tolist() for layer in keys],  # per layer [heads, key, head_dim]
            "left_text": tokens[rows],
            "right_text": tokens[cols],
        }

    everything = slice(0, len(tokens))
    data = {"all": block(everything, everything)}
    if sentence_b_start is not None:
        a, b = slice(0, sentence_b_start), slice(sentence_b_start, len(tokens))
        data.update(aa=block(a, a), bb=block(b, b), ab=block(a, b), ba=block(b, a))
    return data


def neuron_view_html(
    model: torch.nn.Module,
    tokenizer: Any,
    text: str,
    text_b: str | None = None,
    *,
    layer: int = 0,
    head: int = 0,
    display_mode: str = "light",
    decimals: int | None = 3,
) -> str:
    """HTML of bertviz's neuron view of ``text`` (and sentence B ``text_b``) for a course_lib model."""
    if display_mode not in ("light", "dark"):
        raise ValueError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    tokens, ids, type_ids = tokenize(tokenizer, text, text_b)
    device = next(model.parameters()).device
    inputs = {} if text_b is None else {"token_type_ids": torch.tensor([type_ids], device=device)}
    queries, keys, attentions = queries_keys_attentions(model, torch.tensor([ids], device=device), **inputs)
    n_layers, n_heads = len(attentions), attentions[0].size(1)
    if not 0 <= layer < n_layers or not 0 <= head < n_heads:
        raise ValueError(f"layer must be in 0..{n_layers - 1} and head in 0..{n_heads - 1}, got {layer}, {head}")
    sentence_b_start = sentence_b_start_from_type_ids(type_ids) if text_b is not None else None
    check_sentence_b_start(tokens, sentence_b_start)
    attn = _first_example(attentions, decimals)  # per layer [heads, query, key]
    queries, keys = _first_example(queries, decimals), _first_example(keys, decimals)  # [heads, tokens, head_dim]
    # A causal model never puts weight above the diagonal; bertviz then greys out the keys to the right.
    bidirectional = any(bool(weights.triu(diagonal=1).abs().sum() > 0) for weights in attn)
    root_id = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": _filters(tokens, sentence_b_start, attn, queries, keys),
        "default_filter": "all",
        "root_div_id": root_id,
        "bidirectional": bidirectional,
        "display_mode": display_mode,
        "layer": layer,
        "head": head,
    }
    script = resources.files("bertviz").joinpath("neuron_view.js").read_text()
    marker = "const params = window.bertviz_params"
    if marker not in script:
        raise RuntimeError("this bertviz version's neuron_view.js differs from bertviz 1.4; please report it")
    script = script.replace(marker, "const params = " + json.dumps(params, separators=(",", ":")))
    controls = _CONTROLS.format(root_id=root_id, pair_filter=_PAIR_FILTER if sentence_b_start is not None else "")
    picture = neuron_view_figure(attn[layer][head], tokens, tokens, layer, head)  # the collapsed first state
    return with_fallback(controls, script, root_id, picture)


def neuron_view(model: torch.nn.Module, tokenizer: Any, text: str, text_b: str | None = None, **options: Any) -> None:
    """Show bertviz's neuron view in the notebook (options: see :func:`neuron_view_html`)."""
    display(HTML(neuron_view_html(model, tokenizer, text, text_b, **options)))
