"""What a fine-tuning check scores: a fresh model of the task's own class holding the returned model's weights.

Only the weights travel, read as plain tensors straight from the modules' own ``_parameters`` / ``_buffers`` /
``_modules`` dictionaries, without calling a single method of the returned object (not even the class's
``state_dict``, which calls each submodule's ``_save_to_state_dict`` and runs its state-dict hooks: student code could
sit there). They are checked against the expected names and shapes and loaded strictly, so nothing else the returned
object carries (a forward hook that rewrites the outputs, a patched submodule, a replaced method) takes part in the
score. Used by ``classifier_check`` and ``lm_check``.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.grading.runtime.errors import CheckFailure

LAST_SCORED: list[nn.Module] = []  # the model the last check scored (set after the student's code has returned)
_PLAIN = (torch.Tensor, nn.Parameter)  # a tensor subclass could run code of its own while being read or loaded


def plain_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and persistent buffer under ``model``, by ``state_dict`` name, read from the plain dicts.

    Raises ValueError for anything that is not a plain module tree (a replaced dict, a non-string name, a tensor
    subclass): the check then tells the student it could not read the weights.
    """
    weights: dict[str, torch.Tensor] = {}
    stack = [("", model)]
    while stack:
        prefix, module = stack.pop()
        if prefix.count(".") > 64:
            raise ValueError("the module tree is deeper than any model of the course (a cycle?)")
        state = object.__getattribute__(module, "__dict__")
        if type(state) is not dict:
            raise ValueError(f"{prefix or 'the model'} has an unusual __dict__")
        parameters, buffers, children = (state.get(key) for key in ("_parameters", "_buffers", "_modules"))
        dropped = state.get("_non_persistent_buffers_set", set())
        if not (type(parameters) is type(buffers) is type(children) is dict and type(dropped) is set):
            raise ValueError(f"{prefix or 'the model'}'s parameter, buffer or module tables were replaced")
        for table, skip in ((parameters, set()), (buffers, dropped)):
            for name, value in dict.items(table):
                if type(name) is not str:
                    raise ValueError(f"a weight of {prefix or 'the model'} has a name that is not a string")
                if value is None or name in skip:
                    continue
                if type(value) not in _PLAIN:
                    raise ValueError(f"{prefix}{name} is a {type(value).__name__}, not a plain tensor")
                weights[prefix + name] = torch.Tensor.detach(value)
        for name, child in reversed(list(dict.items(children))):
            if child is not None:
                if type(name) is not str or not isinstance(child, nn.Module):
                    raise ValueError(f"{prefix or 'the model'} holds a submodule that is not a module")
                stack.append((f"{prefix}{name}.", child))
    return weights


def rebuilt(trained: nn.Module, fresh: nn.Module, hint: str) -> nn.Module:
    """``fresh`` (a new model of the task's architecture) holding ``trained``'s weights; ``hint`` if layers changed."""
    expected = fresh.state_dict()
    try:
        weights = plain_weights(trained)
    except Exception as exc:  # noqa: BLE001 - whatever the object does, the student gets a message
        raise CheckFailure(f"the check could not read the trained weights: {type(exc).__name__}: {exc}",
                           hint="keep the model's layers as they are and train their weights.") from None
    changed = sorted(set(weights) ^ set(expected)) + [
        name for name, value in weights.items() if name in expected and value.shape != expected[name].shape]
    if changed:
        raise CheckFailure(f"the returned model's layers differ from the model you were given ({len(changed)} "
                           f"weights added, removed or reshaped, e.g. {', '.join(changed[:3])}).", hint=hint)
    with torch.no_grad():
        fresh.load_state_dict(weights, strict=True)
    LAST_SCORED[:] = [fresh]  # the re-grade's training process saves these weights for its scorer (worker.py)
    return fresh
