"""The machinery every converter shares: apply a key table and prove that every key and shape was used."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor


def same(tensor: Tensor) -> Tensor:
    """Copy as it is."""
    return tensor


def transposed(tensor: Tensor) -> Tensor:
    """GPT's ``Conv1D`` stores ``[in, out]``; ``nn.Linear`` stores ``[out, in]``."""
    return tensor.t()


def third(part: int, transpose: bool = True) -> Callable[[Tensor], Tensor]:
    """Slice query (0), key (1) or value (2) out of GPT's fused ``c_attn`` (weight ``[dim, 3 dim]``, bias ``[3 dim]``).

    Weights are also transposed (``Conv1D`` -> ``nn.Linear``) unless ``transpose=False``.
    """

    def take(tensor: Tensor) -> Tensor:
        size = tensor.size(-1) // 3
        piece = tensor[..., part * size : (part + 1) * size]
        return piece.t() if transpose and piece.dim() == 2 else piece

    take.__name__ = f"{['query', 'key', 'value'][part]}_third"
    return take


@dataclass(frozen=True)
class Rule:
    """One line of a key table: course_lib key <- Hugging Face key, through ``convert``; ``{i}`` is the layer."""

    ours: str
    theirs: str
    convert: Callable[[Tensor], Tensor] = same


def expand_rules(rules: Iterable[Rule], n_layers: int, ours_prefix: str = "", theirs_prefix: str = "") -> list[Rule]:
    """Write out every ``{i}`` rule once per layer and put the prefixes in front."""
    expanded = []
    for rule in rules:
        layers = range(n_layers) if "{i}" in rule.ours else [None]
        for i in layers:
            expanded.append(
                Rule(ours_prefix + rule.ours.format(i=i), theirs_prefix + rule.theirs.format(i=i), rule.convert)
            )
    return expanded


def rename_legacy_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Old TensorFlow-era checkpoints call LayerNorm's weight/bias ``gamma``/``beta``; use today's names."""
    renamed = {}
    for key, tensor in state_dict.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        renamed[key] = tensor
    return renamed


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_with_rules(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    rules: list[Rule],
    ignored: Iterable[str] = (),
    tied: Mapping[str, str] | None = None,
    assign: bool = False,
) -> nn.Module:
    """Fill ``model`` from ``state_dict`` through ``rules``; ValueError unless every key and shape is used exactly.

    ``ignored``: regular expressions of their keys that are deliberately dropped (buffers course_lib rebuilds, such
    as causal-mask tables). ``tied``: their key -> their key it must equal (tied copies, e.g. the LM head).
    ``assign``: hand each converted tensor to the model instead of copying it into the existing one, for a model
    built on the ``meta`` device (no memory allocated twice); the caller then re-ties any tied parameters.
    """
    tied = dict(tied or {})
    theirs_needed = {rule.theirs for rule in rules}
    missing = theirs_needed - set(state_dict)
    if missing:
        raise ValueError(f"state dict is missing {len(missing)} key(s): {_listing(missing)}")
    patterns = [re.compile(pattern) for pattern in ignored]
    extra = {
        key for key in state_dict
        if key not in theirs_needed and key not in tied and not any(p.fullmatch(key) for p in patterns)
    }
    if extra:
        raise ValueError(f"state dict has {len(extra)} unexpected key(s): {_listing(extra)}")
    for copy_key, source_key in tied.items():
        if copy_key in state_dict and not torch.equal(state_dict[copy_key], state_dict[source_key]):
            raise ValueError(f"{copy_key} should be tied to (equal to) {source_key}, but the two differ")

    ours_needed = dict(model.named_parameters())  # tied parameters appear once
    persistent = set(model.state_dict())
    ours_needed.update((name, buffer) for name, buffer in model.named_buffers() if name in persistent)
    ours_filled = [rule.ours for rule in rules]
    unknown = set(ours_filled) - set(ours_needed)
    if unknown:
        raise ValueError(f"key table names course_lib key(s) the model does not have: {_listing(unknown)}")
    unfilled = set(ours_needed) - set(ours_filled)
    if unfilled:
        raise ValueError(f"key table leaves course_lib key(s) unfilled: {_listing(unfilled)}")

    with torch.no_grad():
        for rule in rules:
            tensor = rule.convert(state_dict[rule.theirs])
            target = ours_needed[rule.ours]
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(
                    f"shape mismatch: {rule.theirs} gives {tuple(tensor.shape)} after {rule.convert.__name__}, "
                    f"but {rule.ours} is {tuple(target.shape)}"
                )
            if assign:
                owner, _, name = rule.ours.rpartition(".")
                tensor = tensor.to(target.dtype)
                value = nn.Parameter(tensor, requires_grad=target.requires_grad) if isinstance(
                    target, nn.Parameter) else tensor
                setattr(model.get_submodule(owner), name, value)
            else:
                target.copy_(tensor)
    return model


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Drop ``prefix`` from every key that has it (a head model's ``transformer.`` in front of the body's keys)."""
    return {key[len(prefix):] if key.startswith(prefix) else key: tensor for key, tensor in state_dict.items()}


def count_layers(state_dict: Mapping[str, Tensor], pattern: str) -> int:
    """Number of layers, from the largest index matched by ``pattern`` (a regex with one group)."""
    indices = [int(m.group(1)) for key in state_dict if (m := re.match(pattern, key))]
    return max(indices) + 1 if indices else 0
