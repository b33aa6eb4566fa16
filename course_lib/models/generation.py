"""Text generation from a GPT language model: greedy, temperature, top-k and top-p (nucleus) sampling."""

from __future__ import annotations

import torch
from torch import nn


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to -inf (Fan et al. 2018; used for GPT-2's samples)."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # [batch, 1]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probabilities add up to >= p (nucleus sampling, Holtzman et al. 2020)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [batch, vocab]
    probabilities = torch.softmax(sorted_logits, dim=-1)  # [batch, vocab], largest first
    mass_above = probabilities.cumsum(dim=-1) - probabilities  # probability of all tokens ranked above this one
    drop_sorted = mass_above >= p  # those already reach p without this token; the most likely token always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to ``input_ids [batch, tokens]``, one at a time; returns the whole sequences.

    Greedy (``do_sample=False``) takes the arg-max token. Sampling draws from softmax(logits / temperature), after
    keeping only the ``top_k`` most likely tokens and/or the top-``top_p`` nucleus; ``seed`` makes it repeatable.
    The context is cropped to the model's ``context_length``. Rows that produced ``eos_token_id`` keep repeating it.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    was_training = model.training
    model.eval()
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    context_length = model.config.context_length
    finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        logits = model(input_ids[:, -context_length:]).logits[:, -1, :]  # [batch, vocab]: the next token's scores
        if do_sample:
            logits = logits / temperature
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            if top_p is not None:
                logits = top_p_filter(logits, top_p)
            probabilities = torch.softmax(logits, dim=-1)
            next_token = torch.multinomial(probabilities, num_samples=1, generator=generator)  # [batch, 1]
        else:
            next_token = logits.argmax(dim=-1, keepdim=True)  # [batch, 1]
        if eos_token_id is not None:
            next_token = next_token.masked_fill(finished[:, None], eos_token_id)
            finished |= next_token[:, 0] == eos_token_id
        input_ids = torch.cat([input_ids, next_token], dim=1)
        if eos_token_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return input_ids
