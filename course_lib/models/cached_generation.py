"""Generation with a key/value cache: the prompt goes through the model once, then one new token per step.

The sampling rules (greedy, temperature, top-k, top-p) are those of ``course_lib.models.generation``; only the
bookkeeping differs: instead of re-running the whole sequence for every new token, the model keeps each layer's keys
and values (``model.new_cache()``) and is fed just the newest token, with an attention mask that covers them all.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.models.generation import top_k_filter, top_p_filter


def choose_next_token(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``logits [batch, vocab]`` -> next token ids ``[batch, 1]``: arg-max, or a draw after the filters."""
    if not do_sample:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1, generator=generator)


@torch.no_grad()
def generate_cached(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Append up to ``max_new_tokens`` tokens to ``input_ids [batch, tokens]``; returns the whole sequences.

    ``model(ids, attention_mask, cache=cache)`` must return ``.logits`` and ``model.new_cache()`` an empty cache.
    A batch of prompts of different lengths is LEFT-padded, with ``attention_mask`` 0 on the padding, so every
    row's next token lands in the same column. Rows that produced ``eos_token_id`` keep repeating it; generation
    stops early once every row has.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=input_ids.device).manual_seed(seed) if seed is not None else None
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cache = model.new_cache()
    finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    new_ids = input_ids  # the prompt first, then one token per step
    for _ in range(max_new_tokens):
        logits = model(new_ids, attention_mask, cache=cache).logits[:, -1, :]  # [batch, vocab]
        next_token = choose_next_token(logits, do_sample, temperature, top_k, top_p, generator)  # [batch, 1]
        if eos_token_id is not None:
            next_token = next_token.masked_fill(finished[:, None], eos_token_id)
            finished |= next_token[:, 0] == eos_token_id
        input_ids = torch.cat([input_ids, next_token], dim=1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(next_token)], dim=1)
        new_ids = next_token
        if eos_token_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return input_ids
