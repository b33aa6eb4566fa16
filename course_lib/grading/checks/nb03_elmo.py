"""Checks for notebook 03 (ELMo): the scalar mix of biLM layers, and reversing a right-padded batch.

- ``scalar_mix``: the student's ``fn(layers, weights, gamma, mask=None, do_layer_norm=False)`` returns
  ``gamma * sum_j softmax(weights)_j * layers[j]`` (Peters et al. 2018, Eq. 1) for ``layers [num_layers, batch,
  tokens, dim]``; with ``do_layer_norm`` each layer is first normalised with ONE mean and variance over its real
  (``mask``) positions, as ``course_lib.blocks.scalar_mix.masked_layer_norm`` and allennlp do. Only real positions
  are graded (what a mix puts on padding is never used).
- ``reverse_padded``: ``fn(sequence, lengths)`` reverses the first ``lengths[b]`` steps of every row of a
  right-padded ``[batch, tokens]`` or ``[batch, tokens, dim]`` tensor and leaves the padding where it is, which is how
  the backward LM reads each sentence right to left (``course_lib.blocks.lstm_lm.reverse_padded``).

Every call draws fresh shapes and values (``seed=None``), with several numbers of layers and both tensor kinds in one
call, so an answer with hard-coded sizes fails; a wrong answer is compared with the known mistakes to name the one it
matches.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_lib.blocks.lstm_lm import lengths_to_mask
from course_lib.blocks.lstm_lm import reverse_padded as library_reverse_padded
from course_lib.blocks.scalar_mix import LAYER_NORM_EPSILON, masked_layer_norm
from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import call_student

# --- scalar mix -----------------------------------------------------------------------------------------------------


def _mix_reference(layers: torch.Tensor, weights: torch.Tensor, gamma: torch.Tensor, mask: torch.Tensor | None,
                   do_layer_norm: bool, *, softmax: bool = True, use_gamma: bool = True, norm: str = "masked"
                   ) -> torch.Tensor:
    """gamma * sum_j s_j h_j with switches that reproduce the known mistakes; ``[batch, tokens, dim]``."""
    s = weights.softmax(dim=0) if softmax else weights  # [num_layers]
    if do_layer_norm:
        real = mask if mask is not None else torch.ones(layers.shape[1:3], dtype=torch.bool)
        if norm == "masked":
            layers = torch.stack([masked_layer_norm(layer, real) for layer in layers])
        elif norm == "unmasked":  # padding counted in the mean and variance
            layers = torch.stack([masked_layer_norm(layer, torch.ones_like(real)) for layer in layers])
        elif norm == "per_vector":  # F.layer_norm over the last axis: one mean and variance per token
            layers = F.layer_norm(layers, layers.shape[-1:], eps=LAYER_NORM_EPSILON)
    mixed = (s[:, None, None, None] * layers).sum(dim=0)
    return gamma * mixed if use_gamma else mixed


# (name, keyword arguments of _mix_reference, needs layer norm, hint); tried in this order.
_MIX_MISTAKES = [
    ("weights not put through a softmax", {"softmax": False}, False,
     "s = softmax(w): the raw weights can be negative and need not sum to 1; use weights.softmax(dim=0)."),
    ("gamma forgotten", {"use_gamma": False}, False,
     "multiply the weighted sum by gamma: ELMo = gamma * sum_j s_j h_j (Eq. 1). gamma lets the task rescale ELMo."),
    ("neither softmax nor gamma", {"softmax": False, "use_gamma": False}, False,
     "s = softmax(w), and the sum is multiplied by gamma (Eq. 1)."),
    ("padding not masked in the layer norm", {"norm": "unmasked"}, True,
     "compute each layer's mean and variance over the REAL positions only (mask == True): padding rows hold "
     "values that would shift them."),
    ("each vector normalised on its own", {"norm": "per_vector"}, True,
     "normalise a whole layer with one mean and one variance (over every real token and every dimension), not each "
     "token's vector separately (F.layer_norm does the latter)."),
    ("layer norm skipped", {"norm": "none"}, True,
     "with do_layer_norm=True, normalise every layer before mixing it: (h - mean) / sqrt(variance + 1e-13)."),
]


def _draw_mix_case(draw: random.Random, generator: torch.Generator, num_layers: int, padded: bool):
    """Random ``layers [L, batch, tokens, dim]``, raw ``weights [L]``, ``gamma []`` and a right-padding mask."""
    batch, tokens, dim = draw.randint(2, 3), draw.randint(4, 7), draw.choice([3, 4, 6])
    layers = torch.randn(num_layers, batch, tokens, dim, generator=generator) * 2 + 1
    weights = torch.randn(num_layers, generator=generator)  # can be negative: the softmax matters
    gamma = torch.tensor(draw.uniform(0.3, 2.5))
    mask = None
    if padded:
        lengths = torch.tensor([tokens] + [draw.randint(2, tokens - 1) for _ in range(batch - 1)])
        mask = lengths_to_mask(lengths, tokens)  # [batch, tokens], True on real tokens
        layers = torch.where(mask[None, :, :, None], layers, layers + 10.0)  # padding holds far-off values
    return layers, weights, gamma, mask


@register("scalar_mix", title="ELMo's scalar mix of layers")
def scalar_mix(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(layers, weights, gamma, mask=None, do_layer_norm=False)`` on three drawn cases."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    cases = [("3 layers, no padding", 3, False, False),
             (f"{(other := draw.choice([2, 4, 5]))} layers, padding, layer norm", other, True, True),
             (f"{(third := draw.choice([2, 4]))} layers, padding, no layer norm", third, True, False)]
    for label, num_layers, padded, do_layer_norm in cases:
        layers, weights, gamma, mask = _draw_mix_case(draw, generator, num_layers, padded)
        kwargs = {"mask": mask, "do_layer_norm": do_layer_norm} if padded else {}
        answer = call_student(fn, layers, weights, gamma, **kwargs, error_hints=[
            (r"(?i)(size|shape|dimension)",
             "weights has one value per layer: weights.softmax(0)[:, None, None, None] lines it up with layers "
             "[num_layers, batch, tokens, dim]; the mask is [batch, tokens].")])
        _grade_mix(answer, layers, weights, gamma, mask, do_layer_norm, label)
    return "gamma * sum_j softmax(w)_j h_j, with and without the masked layer norm, for 2 to 5 layers."


def _grade_mix(answer: object, layers: torch.Tensor, weights: torch.Tensor, gamma: torch.Tensor,
               mask: torch.Tensor | None, do_layer_norm: bool, label: str) -> None:
    expected = _mix_reference(layers, weights, gamma, mask, do_layer_norm)
    got = expect_exact_tensor(answer, "your mix", hint="return the mixed tensor [batch, tokens, dim].")
    if tuple(got.shape) != tuple(expected.shape) or got.dtype != expected.dtype:
        hint = ("you returned one tensor per layer: sum over the layer axis (dim=0)." if got.dim() == 4 else
                "the mix has the shape of ONE layer: [batch, tokens, dim].")
        raise CheckFailure(f"({label}) the mix should be a {expected.dtype} tensor of shape {list(expected.shape)}, "
                           f"got {got.dtype} of shape {list(got.shape)}.", hint=hint)
    real = (mask if mask is not None else torch.ones(expected.shape[:2], dtype=torch.bool))[:, :, None]
    got = torch.where(real, got.detach(), torch.zeros(()))
    if is_close(got, torch.where(real, expected, torch.zeros(()))):
        return
    for name, options, needs_norm, hint in _MIX_MISTAKES:
        if needs_norm and not do_layer_norm:
            continue
        mistake = torch.where(real, _mix_reference(layers, weights, gamma, mask, do_layer_norm, **options),
                              torch.zeros(()))
        if is_close(got, mistake):
            raise CheckFailure(f"({label}) wrong mix: this looks like '{name}'.",
                               details=[f"weights (raw w) = {[round(w, 4) for w in weights.tolist()]}, "
                                        f"gamma = {gamma.item():.4f}"], hint=hint)
    raise CheckFailure(f"({label}) wrong mix.", details=describe_difference(got, torch.where(real, expected,
                                                                                            torch.zeros(())), "mix"),
                       hint="mix = gamma * sum over j of softmax(weights)[j] * layers[j] (normalised first when "
                            "do_layer_norm); padding positions are not graded.")


# --- reversing a right-padded batch ---------------------------------------------------------------------------------


def _reverse_mistakes(sequence: torch.Tensor, lengths: torch.Tensor) -> list[tuple[str, torch.Tensor, str]]:
    """What the known mistakes return for ``sequence``."""
    positions = torch.arange(sequence.size(1))[None, :]
    padding = ~(positions < lengths[:, None])
    if sequence.dim() == 3:
        padding = padding[:, :, None]
    reversed_then_zeroed = library_reverse_padded(sequence, lengths).masked_fill(padding, 0)
    return [
        ("whole rows flipped, padding included", sequence.flip(1),
         "flipping the whole row moves the padding to the FRONT, so the backward LM would read padding first: reverse "
         "only the first lengths[b] steps of row b."),
        ("nothing reversed", sequence.clone(),
         "reverse each row's real tokens: position k goes to lengths[b] - 1 - k."),
        ("the batch axis flipped", sequence.flip(0), "reverse along the token axis (dim=1), not the batch axis."),
        ("padding set to 0", reversed_then_zeroed,
         "leave the padding positions exactly as they were (the function is its own inverse)."),
    ]


def _draw_reverse_case(draw: random.Random, generator: torch.Generator, with_dim: bool):
    batch, tokens = draw.randint(3, 5), draw.randint(5, 9)
    lengths = [tokens, 1] + [draw.randint(2, tokens - 1) for _ in range(batch - 2)]
    draw.shuffle(lengths)
    lengths = torch.tensor(lengths)
    pad = draw.randint(1, 9)
    if with_dim:
        sequence = torch.randn(batch, tokens, draw.choice([2, 3, 5]), generator=generator)
        sequence = torch.where(lengths_to_mask(lengths, tokens)[:, :, None], sequence, torch.full((), float(pad)))
    else:
        sequence = torch.randint(10, 100, (batch, tokens), generator=generator)
        sequence = torch.where(lengths_to_mask(lengths, tokens), sequence, torch.full((), pad))
    return sequence, lengths


@register("reverse_padded", title="Reversing a right-padded batch for the backward LM")
def reverse_padded(fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``fn(sequence, lengths)`` on token ids ``[batch, tokens]`` and on vectors ``[batch, tokens, dim]``."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for label, with_dim in (("token ids [batch, tokens]", False), ("vectors [batch, tokens, dim]", True)):
        sequence, lengths = _draw_reverse_case(draw, generator, with_dim)
        answer = call_student(fn, sequence, lengths, error_hints=[
            (r"(?i)(size|shape|index|dimension)",
             "build one index per position, lengths[:, None] - 1 - positions for real tokens and the position itself "
             "for padding; for vectors expand it over the last axis before sequence.gather(1, index).")])
        _grade_reverse(answer, sequence, lengths, label)
    return ("each row's real tokens reversed and its padding left in place, for ids and for vectors; the backward LM "
            "reads every sentence right to left from its own last token.")


def _grade_reverse(answer: object, sequence: torch.Tensor, lengths: torch.Tensor, label: str) -> None:
    expected = library_reverse_padded(sequence, lengths)
    got = expect_exact_tensor(answer, "your reversed batch", hint="return a tensor shaped like `sequence`.")
    if tuple(got.shape) != tuple(expected.shape) or got.dtype != expected.dtype:
        raise CheckFailure(f"({label}) expected a {expected.dtype} tensor of shape {list(expected.shape)} (like the "
                           f"input), got {got.dtype} of shape {list(got.shape)}.",
                           hint="keep the input's shape and dtype: only the order of the real tokens changes.")
    got = got.detach()
    if torch.equal(got, expected):
        return
    row = int((got != expected).flatten(1).any(-1).nonzero()[0])
    shown = (lambda t: t[row].tolist()) if sequence.dim() == 2 else (lambda t: [round(v, 2) for v in t[row, :, 0]
                                                                                .tolist()])
    details = [f"row {row}, length {int(lengths[row])} of {sequence.size(1)} positions:",
               f"  input    {shown(sequence)}", f"  got      {shown(got)}", f"  expected {shown(expected)}"]
    if sequence.dim() == 3:
        details.insert(1, "(first feature of each position shown)")
    for name, mistake, hint in _reverse_mistakes(sequence, lengths):
        if torch.equal(got, mistake):
            raise CheckFailure(f"({label}) this looks like '{name}'.", details=details, hint=hint)
    raise CheckFailure(f"({label}) wrong order.", details=details,
                       hint="row b: positions 0 .. lengths[b] - 1 reversed, positions from lengths[b] on unchanged.")
