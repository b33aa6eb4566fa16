"""BERT's masked-LM corruption: choose 15% of the tokens, then 80% [MASK], 10% random token, 10% unchanged.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", Sec. 3.1
(Task #1: Masked LM) and Appendix A.1. The model predicts the original token only at the chosen positions; every other
position gets the label -100, which ``torch.nn.functional.cross_entropy`` ignores by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100  # label of positions the loss ignores (cross_entropy's default ignore_index)


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
    special_tokens_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(masked_input_ids, labels)`` for masked-LM pretraining (Devlin et al. 2019, Sec. 3.1, App. A.1).

    Each token is chosen with probability ``mlm_probability``, except the ids in ``special_ids`` ([CLS], [SEP],
    [PAD], ...) and the positions where ``special_tokens_mask`` is True, which are never chosen. A chosen token becomes
    [MASK] with probability 0.8, a uniformly random id in ``[0, vocab_size)`` with probability 0.1, and stays unchanged
    with probability 0.1. ``labels`` holds the original id at chosen positions and -100 elsewhere. ``input_ids`` is not
    modified; all randomness comes from ``generator`` (the global generator when None).
    """
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    if vocab_size <= 0 or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"need 0 <= mask_token_id < vocab_size, got mask_token_id={mask_token_id}, "
                         f"vocab_size={vocab_size}")
    if special_tokens_mask is not None and special_tokens_mask.shape != input_ids.shape:
        raise ValueError(f"special_tokens_mask has shape {list(special_tokens_mask.shape)}, "
                         f"input_ids has {list(input_ids.shape)}")
    device = input_ids.device

    # 1. Choose 15% of the ordinary tokens.                                        # [batch, tokens] throughout
    never = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype, device=device))
    if special_tokens_mask is not None:
        never = never | special_tokens_mask.to(device=device, dtype=torch.bool)
    chosen = (torch.rand(input_ids.shape, generator=generator, device=device) < mlm_probability) & ~never
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)

    # 2. Split the chosen tokens 80 / 10 / 10 with one uniform draw per position.
    draw = torch.rand(input_ids.shape, generator=generator, device=device)
    to_mask = chosen & (draw < 0.8)
    to_random = chosen & (draw >= 0.8) & (draw < 0.9)  # the last 10% (draw >= 0.9) stay unchanged
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device, dtype=input_ids.dtype)

    masked_input_ids = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked_input_ids = torch.where(to_random, random_ids, masked_input_ids)
    return masked_input_ids, labels
