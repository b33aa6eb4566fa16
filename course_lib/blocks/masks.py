"""Attention masks: which keys each query may look at.

Convention used everywhere in course_lib: a boolean mask is ``True`` where attention is ALLOWED, and it broadcasts
to the attention scores ``[batch, heads, query, key]``.
"""

from __future__ import annotations

import torch


def causal_mask(n_query: int, n_key: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Decoder mask (Vaswani et al. 2017, Sec. 3.2.3; GPT's LM): token i sees tokens 0..i, never those to its right.

    Returns a boolean ``[query, key]`` tensor. With ``n_key > n_query`` the queries are the LAST ``n_query`` positions
    (the usual layout when earlier keys are cached).
    """
    n_key = n_query if n_key is None else n_key
    if n_query < 1 or n_key < n_query:
        raise ValueError(f"causal_mask needs 1 <= n_query <= n_key, got n_query={n_query}, n_key={n_key}")
    query_positions = torch.arange(n_key - n_query, n_key, device=device)[:, None]  # [query, 1]
    key_positions = torch.arange(n_key, device=device)[None, :]  # [1, key]
    return key_positions <= query_positions  # [query, key]


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turn a tokenizer's ``[batch, tokens]`` mask (1 = real token, 0 = padding) into ``[batch, 1, 1, key]``.

    Padding keys are hidden from every query; the padded queries themselves still produce (ignored) outputs.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, tokens] (rank 2), got shape {tuple(attention_mask.shape)}")
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        if not torch.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError("a floating-point attention_mask may only hold 0.0 (padding) and 1.0 (token)")
    return (attention_mask != 0)[:, None, None, :]  # [batch, 1, 1, key]


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """AND together any number of boolean masks (``None`` means "allow everything"); ``None`` if all are ``None``."""
    combined = None
    for mask in masks:
        if mask is not None:
            combined = mask if combined is None else combined & mask
    return combined


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> numbers added to the scores: 0 where allowed, the most negative finite float where hidden.

    The most negative finite value (not -inf) keeps a row whose keys are ALL hidden finite: its softmax becomes
    uniform instead of NaN, exactly as in Hugging Face's models, while every other row is unchanged.
    """
    zeros = torch.zeros((), dtype=dtype, device=allowed.device)
    hidden = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zeros, hidden)


def check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    """Raise ValueError unless the mask is ``None`` or has exactly the shape of ``input_ids``."""
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)} like input_ids"
        )
