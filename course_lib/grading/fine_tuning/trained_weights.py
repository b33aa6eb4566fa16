"""What a fine-tuning check scores: a fresh model of the task's own class holding the returned model's weights.

Only the weights travel (the class's own ``state_dict``, plain tensors of the expected names and shapes, loaded
strictly), so nothing else the returned object carries (a forward hook that rewrites the outputs, a patched
submodule, a replaced method) takes part in the score. Used by ``classifier_check`` and ``lm_check``.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.grading.runtime.errors import CheckFailure


def rebuilt(trained: nn.Module, fresh: nn.Module, hint: str) -> nn.Module:
    """``fresh`` (a new model of the task's architecture) holding ``trained``'s weights; ``hint`` if layers changed."""
    expected = fresh.state_dict()
    try:
        weights = dict(nn.Module.state_dict(trained))  # the class's method: an instance's own is ignored
    except Exception as exc:  # noqa: BLE001 - whatever the object does, the student gets a message
        raise CheckFailure(f"the check could not read the trained weights: {type(exc).__name__}: {exc}",
                           hint="keep the model's layers as they are and train their weights.") from None
    plain = (torch.Tensor, nn.Parameter)  # a tensor subclass could run code of its own while being loaded
    changed = sorted(set(weights) ^ set(expected)) + [
        name for name, value in weights.items()
        if name in expected and (type(value) not in plain or value.shape != expected[name].shape)]
    if changed:
        raise CheckFailure(f"the returned model's layers differ from the model you were given ({len(changed)} "
                           f"weights added, removed or reshaped, e.g. {', '.join(changed[:3])}).", hint=hint)
    with torch.no_grad():
        fresh.load_state_dict(weights, strict=True)
    return fresh
