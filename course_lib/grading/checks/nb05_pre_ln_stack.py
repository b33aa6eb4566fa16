"""Notebook 05's first exercise: GPT-2's pre-LN stack from its parts, the final LayerNorm and the scaled init.

``pre_ln_stack(stack_fn, init_fn)`` grades two functions (Radford et al. 2019, Sec. 2.3):

- ``stack_fn(x, blocks, ln_f)``: every block pre-LN, ``h = x + attn(ln_1(x))`` (causal) then
  ``x = h + feed_forward(ln_2(h))``, and ``ln_f`` once after the last block. Each block is handed as its four parts
  only (:class:`BlockParts`), so the answer cannot call ``block(x)``; random blocks of drawn sizes (random LayerNorm
  weights too) are compared with ``course_lib``'s ``TransformerBlock(pre_norm=True)`` stack, and a wrong answer is
  matched against the known mistakes.
- ``init_fn(blocks, std)``: in place, each residual projection (``attn.output.weight``, ``feed_forward.project.weight``)
  re-drawn from N(0, (std / sqrt(N))^2), N = 2 L ("a factor of 1/sqrt(N) where N is the number of residual layers";
  N = 2 L is nanoGPT's and transformers' reading), every other weight untouched; called with two stds and two
  depths, graded on the measured std and mean of each matrix.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from course_lib.blocks.transformer_block import TransformerBlock
from course_lib.grading.runtime.compare import describe_difference, is_close
from course_lib.grading.runtime.errors import CheckFailure
from course_lib.grading.runtime.inputs import expect_exact_tensor
from course_lib.grading.runtime.registry import register
from course_lib.grading.runtime.runner import AsIs, run_student

# --- the pre-LN block -----------------------------------------------------------------------------------------------


def _block_variant(block: TransformerBlock, x: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """One GPT-2 block computed from its parts, or one known mistake of it."""
    ln_1, attn, ln_2, ff = block.ln_1, block.attn, block.ln_2, block.feed_forward
    causal = mistake != "no causal mask"
    if mistake == "post-LN":
        x = ln_1(x + attn(x, is_causal=True)[0])
        return ln_2(x + ff(x))
    if mistake == "LayerNorm on the residual stream":
        x = ln_1(x)
        x = x + attn(x, is_causal=True)[0]
        x = ln_2(x)
        return x + ff(x)
    if mistake == "feed-forward reads the block input":
        return x + attn(ln_1(x), is_causal=True)[0] + ff(ln_2(x))
    attended = attn(ln_1(x), is_causal=causal)[0]
    h = attended if mistake == "no residual around attention" else x + attended
    second = ln_1 if mistake == "ln_1 used twice" else ln_2
    out = ff(second(h))
    return out if mistake == "no residual around the feed-forward" else h + out


_BLOCK_MISTAKES = [
    ("post-LN", "that is GPT-1's post-LN block (LayerNorm after each residual sum); GPT-2 normalises each "
                "sub-block's INPUT: x = x + attn(ln_1(x)), then x = x + feed_forward(ln_2(x))."),
    ("LayerNorm on the residual stream", "normalise only what enters the sub-block; the residual path carries x "
                                         "itself: x + attn(ln_1(x)), not ln_1(x) + attn(ln_1(x))."),
    ("no causal mask", "GPT-2 is a left-to-right LM: call attn(h, is_causal=True)."),
    ("ln_1 used twice", "the feed-forward sub-block has its own LayerNorm: ln_2."),
    ("feed-forward reads the block input", "the feed-forward reads the output of the attention step "
                                           "(x after its first residual sum), not the block's input."),
    ("no residual around attention", "add the attention output to x (the residual connection)."),
    ("no residual around the feed-forward", "add the feed-forward output to x (the residual connection)."),
]


def _draw_block(draw: random.Random, generator: torch.Generator) -> tuple[TransformerBlock, torch.Tensor]:
    """A random pre-LN block (random LayerNorm weights too, so nothing matches by accident) and ``x``."""
    heads = draw.choice([1, 2, 4])
    dim = heads * draw.choice([2, 4, 6])
    block = TransformerBlock(dim, heads, draw.choice([2, 3, 4]) * dim, approximate_gelu=True, pre_norm=True).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        block.ln_1.weight.add_(1.0)
        block.ln_2.weight.add_(1.0)
    x = 3.0 * torch.randn(draw.randint(1, 3), draw.randint(3, 7), dim, generator=generator) + 1.0
    return block, x


class BlockParts:
    """One block handed to the student as its four parts only (``block(x)`` is not there to call)."""

    def __init__(self, block: TransformerBlock):
        self.ln_1, self.attn, self.ln_2, self.feed_forward = block.ln_1, block.attn, block.ln_2, block.feed_forward

    def __repr__(self) -> str:
        return "BlockParts(ln_1, attn, ln_2, feed_forward)"


def _stack_variant(blocks: list[TransformerBlock], ln_f: torch.nn.LayerNorm, x: torch.Tensor,
                   mistake: str = "") -> torch.Tensor:
    """GPT-2's stack (pre-LN blocks, then the final LayerNorm), or one known mistake of it."""
    if mistake == "only the last block":
        blocks = blocks[-1:]
    if mistake == "only the first block":
        blocks = blocks[:1]
    block_mistake = mistake if mistake in dict(_BLOCK_MISTAKES) else ""
    for block in blocks:
        x = _block_variant(block, x, block_mistake)
        if mistake == "final LayerNorm after every block":
            x = ln_f(x)
    return x if mistake in ("no final LayerNorm", "final LayerNorm after every block") else ln_f(x)


_STACK_MISTAKES = [
    *_BLOCK_MISTAKES,
    ("no final LayerNorm", "GPT-2 adds one LayerNorm after the last block: return ln_f(x)."),
    ("final LayerNorm after every block", "ln_f comes once, after the LAST block; inside the stack only each "
                                          "sub-block's input is normalised."),
    ("only the last block", "run every block in order, each on the previous one's output (x = block(x) in a loop)."),
    ("only the first block", "run every block in order, each on the previous one's output, then ln_f once."),
]


def _draw_stack(draw: random.Random, generator: torch.Generator):
    """2 to 4 random pre-LN blocks of one size, a random final LayerNorm and ``x``."""
    heads = draw.choice([1, 2, 4])
    dim = heads * draw.choice([4, 6, 8])  # >= 4 wide: a 2-wide LayerNorm output is only +-1
    blocks = []
    for _ in range(draw.randint(2, 4)):
        block = TransformerBlock(dim, heads, draw.choice([2, 3, 4]) * dim, approximate_gelu=True,
                                 pre_norm=True).eval()
        with torch.no_grad():
            for parameter in block.parameters():
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
            block.ln_1.weight.add_(1.0)
            block.ln_2.weight.add_(1.0)
        blocks.append(block)
    ln_f = torch.nn.LayerNorm(dim)
    with torch.no_grad():
        ln_f.weight.copy_(1.0 + 0.5 * torch.randn(dim, generator=generator))
        ln_f.bias.copy_(0.5 * torch.randn(dim, generator=generator))
    x = 3.0 * torch.randn(draw.randint(1, 3), draw.randint(3, 7), dim, generator=generator) + 1.0
    return blocks, ln_f, x


def _grade_stack(fn: Callable, draw: random.Random, generator: torch.Generator, case: int) -> None:
    blocks, ln_f, x = _draw_stack(draw, generator)
    with torch.no_grad():
        expected = x
        for block in blocks:
            expected = block(expected, is_causal=True)[0]
        expected = ln_f(expected)
    parts = [BlockParts(block) for block in blocks]
    handed = run_student(fn, x, parts, ln_f, error_hints=[
        (r"tuple", "attn(...) returns a pair (output, weights): take its first item, attn(h, is_causal=True)[0]."),
        (r"not callable", "each block comes as its parts only: block.ln_1, block.attn, block.ln_2, "
                          "block.feed_forward (call those, not the block)."),
        (r"(size|shape)", "every step keeps x's shape [batch, tokens, dim].")])
    handed_parts = [(f"blocks[{i}].{name}", getattr(before, name), getattr(after, name))
                    for i, (before, after) in enumerate(zip(parts, handed.args[1]))
                    for name in ("ln_1", "attn", "ln_2", "feed_forward")]
    for name, before, after in [*handed_parts, ("ln_f", ln_f, handed.args[2])]:
        for (key, value), new in zip(before.state_dict().items(), after.state_dict().values()):
            if not torch.equal(value, new):
                raise CheckFailure(f"your function changed the weights of `{name}` ({key}).",
                                   hint="only call the sub-blocks; do not change their weights.")
    call = f"x of shape {list(x.shape)}, {len(blocks)} blocks"
    got = expect_exact_tensor(handed.answer, "your answer", hint="return the final states, one tensor.")
    if tuple(got.shape) != tuple(x.shape) or got.dtype != x.dtype:
        raise CheckFailure(f"(stack {case}) expected a {x.dtype} tensor of x's shape {list(x.shape)}, got "
                           f"{got.dtype} of shape {list(got.shape)}.",
                           hint="every step keeps x's shape; return ln_f of the last block's output.")
    got = got.detach()
    if is_close(got, expected):
        return
    with torch.no_grad():
        for name, hint in _STACK_MISTAKES:
            if is_close(got, _stack_variant(blocks, ln_f, x, name)):
                raise CheckFailure(f"(stack {case}) this looks like '{name}'.", details=[call], hint=hint)
    raise CheckFailure(f"(stack {case}) wrong output.", details=[call, *describe_difference(got, expected, "x")],
                       hint="for each block: h = x + attn(ln_1(x), is_causal=True)[0]; x = h + feed_forward(ln_2(h)); "
                            "after the loop return ln_f(x).")


_INIT_MISTAKES = {  # name: (the std it gives for std and L blocks, hint)
    "no scaling": (lambda std, n: std, "divide the std by sqrt(N), N = 2 x the number of blocks (two residual "
                                       "branches per block)."),
    "1/sqrt(L)": (lambda std, n: std / math.sqrt(n), "N counts the residual BRANCHES: two per block (attention and "
                                                     "feed-forward), N = 2 L, not L."),
    "1/N": (lambda std, n: std / (2 * n), "the factor is 1 / sqrt(N), a square root, not 1 / N."),
}


def _grade_init(fn: Callable, draw: random.Random, generator: torch.Generator, std: float) -> int:
    """Run the student's ``scale_residual_init(blocks, std)`` on fresh blocks; returns the number of blocks."""
    n_blocks, dim = draw.randint(3, 8), draw.choice([32, 48, 64])
    blocks = torch.nn.ModuleList(TransformerBlock(dim, 4, 4 * dim, pre_norm=True) for _ in range(n_blocks))
    with torch.no_grad():
        for parameter in blocks.parameters():  # a known start far from the answer: 0.3, not std
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        for block in blocks:
            block.attn.output.bias.zero_()
            block.feed_forward.project.bias.zero_()
    before = {key: value.clone() for key, value in blocks.state_dict().items()}
    handed = run_student(fn, AsIs(blocks), std)
    if handed.answer is not None and handed.answer is not blocks:
        answer_kind = type(handed.answer).__name__
        raise CheckFailure(f"scale_residual_init returned a {answer_kind}; it should change the blocks in place "
                           "(and return nothing).", hint="change the weights in place: `with torch.no_grad(): linear.weight.normal_(0, s)`.")
    targets = ("attn.output.weight", "feed_forward.project.weight")
    for key, value in blocks.state_dict().items():
        if key.endswith(targets):
            continue
        if not torch.equal(value, before[key]):
            raise CheckFailure(f"your function changed `{key}`, which GPT-2 initialises as usual.",
                               hint="re-draw only the two residual projections of each block: attn.output.weight and "
                                    "feed_forward.project.weight.")
    right = std / math.sqrt(2 * n_blocks)
    call = f"scale_residual_init(blocks with {n_blocks} blocks of width {dim}, std={std})"
    for key, value in blocks.state_dict().items():
        if not key.endswith(targets):
            continue
        if torch.equal(value, before[key]):
            raise CheckFailure(f"`{key}` is unchanged.", details=[call],
                               hint="re-draw the weight of every block's attn.output and feed_forward.project.")
        if not bool(torch.isfinite(value).all()):
            raise CheckFailure(f"`{key}` has NaN or infinite entries.", details=[call])
        measured, mean = value.std().item(), value.mean().item()
        close_to_old = abs(measured / (0.3 * right / std) - 1) < 0.1 and not abs(measured / right - 1) < 0.1
        if close_to_old:
            raise CheckFailure(f"`{key}` has std {measured:.4f}: the old weights multiplied by the factor, not "
                               f"re-drawn.", details=[call],
                               hint=f"draw new weights: linear.weight.normal_(0.0, std / sqrt(2 L)) = {right:.4f}.")
        if abs(measured / right - 1) > 0.1 or abs(mean) > 0.2 * right:
            named = next((name for name, (gives, _) in _INIT_MISTAKES.items()
                          if abs(measured / gives(std, n_blocks) - 1) < 0.1), None)
            hint = _INIT_MISTAKES[named][1] if named else f"std / sqrt(2 x {n_blocks}) = {right:.4f}, mean 0."
            raise CheckFailure(f"`{key}` has std {measured:.4f} and mean {mean:+.4f}; expected std {right:.4f} "
                               f"(= {std} / sqrt(2 x {n_blocks})) and mean 0"
                               + (f": this looks like '{named}'." if named else "."), details=[call], hint=hint)
    weights = [value for key, value in blocks.state_dict().items() if key.endswith(targets[0])]
    if any(torch.equal(weights[0], other) for other in weights[1:]):
        raise CheckFailure("two blocks got the very same attn.output weights.", details=[call],
                           hint="draw each block's weights separately (normal_ on each), not one copy for all.")
    return n_blocks


@register("pre_ln_stack", title="GPT-2's pre-LN stack, final LayerNorm and scaled initialisation")
def pre_ln_stack(stack_fn: Callable, init_fn: Callable, *, seed: int | None = None) -> str:
    """Grade ``stack_fn(x, blocks, ln_f) -> states`` (blocks as parts) and ``init_fn(blocks, std)`` (in place)."""
    draw = random.Random(seed)
    generator = torch.Generator().manual_seed(draw.randrange(2**31))
    for case in (1, 2):
        _grade_stack(stack_fn, draw, generator, case)
    n_blocks = [_grade_init(init_fn, draw, generator, std) for std in (0.02, 0.05)]   # std is an argument: use it
    return ("every block pre-LN and causal, then the final LayerNorm once, equal to course_lib's GPT-2 stack; the "
            f"residual projections re-drawn with std / sqrt(2 L) (L = {n_blocks[0]} and {n_blocks[1]}, two stds).")
