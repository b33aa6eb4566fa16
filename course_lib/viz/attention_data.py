"""Attention weights in the shape every picture takes: one example, ``[heads, query, key]`` per layer.

A model (course_lib's or Hugging Face's) returns ``attentions``: one ``[batch, heads, query, key]`` tensor per layer,
each row a softmax over the keys (Vaswani et al. 2017, Eq. 1). The views in this package accept either that
tuple or the output object that carries it, plus the example's tokens.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

Encoder = Callable[..., "tuple[list[str], tuple[torch.Tensor, ...]]"]


def attention_tuple(source: Any) -> tuple[torch.Tensor, ...]:
    """The per-layer ``[batch, heads, query, key]`` tensors of a model output (or of a tuple/list of tensors)."""
    attentions = getattr(source, "attentions", source)
    if attentions is None:
        raise ValueError(
            "the model output has no attentions: call the model with output_attentions=True "
            "(Hugging Face models: load them with attn_implementation='eager')"
        )
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, Sequence) or len(attentions) == 0:
        raise ValueError(
            "expected a model output with .attentions or a non-empty tuple of [batch, heads, query, key] tensors, "
            f"got {type(attentions).__name__}"
        )
    for layer, weights in enumerate(attentions):
        if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise ValueError(f"layer {layer}: expected a [batch, heads, query, key] tensor (rank 4), got {shape}")
        if weights.shape != attentions[0].shape:
            raise ValueError(
                f"layer {layer} has shape {tuple(weights.shape)}, layer 0 has {tuple(attentions[0].shape)}"
            )
    return tuple(attentions)


def one_example(source: Any, example: int = 0) -> tuple[torch.Tensor, ...]:
    """Slice example ``example`` out of a batch: per layer ``[batch, heads, q, k]`` -> ``[1, heads, q, k]`` (CPU)."""
    attentions = attention_tuple(source)
    batch = attentions[0].size(0)
    if not -batch <= example < batch:
        raise ValueError(f"example={example} is outside the batch of {batch}")
    example %= batch  # -1 means the last example
    return tuple(weights[example : example + 1].detach().float().cpu() for weights in attentions)


def rounded(attentions: Sequence[torch.Tensor], decimals: int | None = 3) -> tuple[torch.Tensor, ...]:
    """Round weights to ``decimals`` places so a stored notebook holds ``0.123`` instead of ``0.12300000339746475``.

    Rounding happens in float64: its ``tolist()`` gives the shortest decimal that prints as the rounded value.
    ``decimals=None`` keeps full precision.
    """
    if decimals is None:
        return tuple(attentions)
    if not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative int or None, got {decimals!r}")
    return tuple(torch.round(weights.double(), decimals=decimals) for weights in attentions)


def check_tokens(attentions: Sequence[torch.Tensor], tokens: Sequence[str]) -> list[str]:
    """Tokens as a list of strings, after checking there is one per query and key position."""
    tokens = [str(token) for token in tokens]
    n_query, n_key = attentions[0].shape[-2:]
    if len(tokens) != n_query or len(tokens) != n_key:
        raise ValueError(
            f"got {len(tokens)} tokens but the attention covers {n_query} queries x {n_key} keys; pass this "
            "example's tokens, padding included"
        )
    return tokens


def check_sentence_b_start(tokens: Sequence[str], sentence_b_start: int | None) -> None:
    """A sentence pair needs ``0 < sentence_b_start < len(tokens)``: both sentences hold at least one token."""
    if sentence_b_start is not None and not 0 < sentence_b_start < len(tokens):
        raise ValueError(f"sentence_b_start={sentence_b_start} must be between 1 and {len(tokens) - 1}")


def sentence_b_start_from_type_ids(type_ids: Sequence[int]) -> int | None:
    """First position whose segment (token type) id is 1, i.e. where BERT's sentence B begins; ``None`` if absent."""
    for position, type_id in enumerate(type_ids):
        if type_id == 1:
            return position
    return None


def tokenize(tokenizer: Any, text: str, text_b: str | None = None) -> tuple[list[str], list[int], list[int]]:
    """``(tokens, ids, type_ids)`` from a ``tokenizers.Tokenizer`` or a Hugging Face ``transformers`` tokenizer."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # transformers: tokenizer(text, text_pair) -> BatchEncoding
        encoding = tokenizer(text, text_b) if text_b is not None else tokenizer(text)
        ids = list(encoding["input_ids"])
        type_ids = list(encoding.get("token_type_ids") or [0] * len(ids))
        return list(tokenizer.convert_ids_to_tokens(ids)), ids, type_ids
    if hasattr(tokenizer, "encode"):  # tokenizers.Tokenizer: encode(sequence, pair) -> Encoding
        encoding = tokenizer.encode(text, text_b) if text_b is not None else tokenizer.encode(text)
        real = [position for position, flag in enumerate(encoding.attention_mask) if flag]  # drop padding
        return (
            [encoding.tokens[p] for p in real], [encoding.ids[p] for p in real], [encoding.type_ids[p] for p in real]
        )
    raise ValueError(f"tokenizer must be a tokenizers.Tokenizer or a transformers tokenizer, got {type(tokenizer)}")


@torch.no_grad()
def encode_text(model: torch.nn.Module, tokenizer: Any, text: str, text_b: str | None = None):
    """Run one text (or a sentence pair) through ``model``; returns ``(tokens, attentions)`` for that one example.

    The model is called as ``model(input_ids, output_attentions=True)`` (plus ``token_type_ids`` for a pair) in eval
    mode, so dropout does not blur the picture; its previous train/eval mode is restored afterwards.
    """
    tokens, ids, type_ids = tokenize(tokenizer, text, text_b)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)  # [1, tokens]
    extra = {} if text_b is None else {"token_type_ids": torch.tensor([type_ids], device=device)}
    was_training = model.training
    model.eval()
    try:
        output = model(input_ids, output_attentions=True, **extra)
    finally:
        model.train(was_training)
    return tokens, one_example(output)


BYTE_LEVEL_MARKS = {"Ġ": "␣", "Ċ": "↵"}  # GPT-2's byte-level BPE shows a space as Ġ and a newline as Ċ


def readable_tokens(tokens: Sequence[str]) -> list[str]:
    """Token labels for a picture: byte-level BPE's Ġ (a space) as ␣ and Ċ (a newline) as ↵, everywhere alike."""
    readable = []
    for token in tokens:
        for mark, shown in BYTE_LEVEL_MARKS.items():
            token = token.replace(mark, shown)
        readable.append(token)
    return readable


def make_encoder(model: torch.nn.Module, tokenizer: Any) -> Encoder:
    """``encode(text, text_b=None) -> (tokens, attentions)`` bound to one model and tokenizer."""

    def encode(text: str, text_b: str | None = None):
        """Readable tokens and per-layer ``[1, heads, query, key]`` attention of ``text`` (and ``text_b``)."""
        tokens, attentions = encode_text(model, tokenizer, text, text_b)
        return readable_tokens(tokens), attentions

    return encode
