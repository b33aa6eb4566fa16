"""Layer groups: the unit that transfer-learning recipes freeze, unfreeze and give learning rates to.

ULMFiT (Howard & Ruder 2018, Sec. 3.2-3.3) treats a network as a stack of layer groups, ordered from the
input up: embeddings, then each layer, then the task head. Every recipe in this package takes such a list,
ordered bottom to top, so "the last group" is always the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn


@dataclass
class LayerGroup:
    """A named list of parameters that is frozen, unfrozen and scheduled as one unit."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)

    def parameters(self) -> Iterator[nn.Parameter]:
        """Iterate over the group's parameters (the same call as on an ``nn.Module``)."""
        return iter(self.params)

    @property
    def num_params(self) -> int:
        """Number of scalar weights in the group."""
        return sum(p.numel() for p in self.params)

    @property
    def num_trainable(self) -> int:
        """Number of scalar weights that currently receive gradients."""
        return sum(p.numel() for p in self.params if p.requires_grad)


GroupLike = LayerGroup | nn.Module | nn.Parameter | Iterable[nn.Parameter]


def parameters_of(obj: GroupLike | Iterable[GroupLike]) -> list[nn.Parameter]:
    """Flatten a group, module, parameter or a (nested) iterable of them into a list of unique parameters."""
    found: list[nn.Parameter] = []
    seen: set[int] = set()

    def visit(item) -> None:
        if isinstance(item, nn.Parameter):
            if id(item) not in seen:
                seen.add(id(item))
                found.append(item)
        elif isinstance(item, (LayerGroup, nn.Module)):
            for p in item.parameters():
                visit(p)
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
            for sub in item:
                visit(sub)
        else:
            raise ValueError(
                f"expected a LayerGroup, nn.Module, nn.Parameter or an iterable of them, got {type(item).__name__}"
            )

    visit(obj)
    return found


def make_groups(
    groups: Sequence[GroupLike] | Mapping[str, GroupLike], names: Sequence[str] | None = None
) -> list[LayerGroup]:
    """Build layer groups, bottom to top, from modules / parameter lists (a list, or a dict name -> group).

    A parameter listed in two groups (tied weights, e.g. GPT's input embedding and LM head) belongs to the lower
    one only, because ``torch.optim`` refuses a parameter that appears in two parameter groups.
    """
    if isinstance(groups, Mapping):
        if names is not None:
            raise ValueError("pass names either as the dict's keys or as `names`, not both")
        names, groups = list(groups.keys()), list(groups.values())
    else:
        groups = list(groups)
    if len(groups) == 0:
        raise ValueError("need at least one layer group, got none")
    if names is None:
        names = [f"group_{i}" for i in range(len(groups))]
    if len(names) != len(groups):
        raise ValueError(f"got {len(names)} names for {len(groups)} groups")
    if len(set(names)) != len(names):
        raise ValueError(f"group names must be unique, got {list(names)}")

    seen: set[int] = set()
    result = []
    for name, group in zip(names, groups):
        params = [p for p in parameters_of(group) if id(p) not in seen]
        if not params:
            raise ValueError(f"layer group {name!r} has no parameters (of its own)")
        seen.update(id(p) for p in params)
        result.append(LayerGroup(name, params))
    return result


def _get_attribute(model: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path such as ``"encoder.layers"``; ValueError naming what exists if missing."""
    obj = model
    for part in path.split("."):
        if not hasattr(obj, part):
            children = [name for name, _ in obj.named_children()] if isinstance(obj, nn.Module) else []
            raise ValueError(f"{type(obj).__name__} has no attribute {part!r} (from {path!r}); children: {children}")
        obj = getattr(obj, part)
    return obj


def _as_paths(paths: str | Sequence[str] | None) -> list[str]:
    """``None`` -> [], ``"a"`` -> ["a"], ``("a", "b")`` -> ["a", "b"]."""
    if paths is None:
        return []
    return [paths] if isinstance(paths, str) else list(paths)


def layer_groups(
    model: nn.Module,
    embeddings: str | Sequence[str] | None = "embeddings",
    layers: str = "layers",
    head: str | Sequence[str] | None = "head",
) -> list[LayerGroup]:
    """Split a BERT/GPT-like model into ``[embeddings, layers.0, ..., layers.{L-1}, head]`` (bottom to top).

    - ``embeddings``: attribute path (dotted, e.g. ``"bert.embeddings"``) or several paths that form the bottom
      group; ``None`` for no embedding group.
    - ``layers``: path to an ``nn.ModuleList`` (or ``nn.Sequential``) of blocks; each block is one group.
    - ``head``: path or paths of the top group (e.g. ``("final_norm", "classifier")``); ``None`` for no head group.

    Every parameter of ``model`` must land in a group, otherwise a ValueError names the ones left over
    (they would silently never train); add their module to ``embeddings`` or ``head``.
    """
    stack = _get_attribute(model, layers)
    if not isinstance(stack, (nn.ModuleList, nn.Sequential)):
        raise ValueError(f"{layers!r} must be an nn.ModuleList or nn.Sequential, got {type(stack).__name__}")

    groups: dict[str, list[nn.Module]] = {}
    if _as_paths(embeddings):
        groups["embeddings"] = [_get_attribute(model, p) for p in _as_paths(embeddings)]
    for i, block in enumerate(stack):
        groups[f"{layers.split('.')[-1]}.{i}"] = [block]  # e.g. "layers.0"
    if _as_paths(head):
        groups["head"] = [_get_attribute(model, p) for p in _as_paths(head)]
    result = make_groups(groups)

    grouped = {id(p) for g in result for p in g.params}
    leftover = [name for name, p in model.named_parameters() if id(p) not in grouped]
    if leftover:
        raise ValueError(f"parameters outside every layer group: {leftover}; add their module to embeddings or head")
    return result
