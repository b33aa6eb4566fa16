"""The copy task of notebook 04: random patterns repeated with a fixed period, read segment by segment.

Once a pattern of ``period`` tokens has been seen, the next token is always the one ``period`` tokens back, i.e. the
input ``period - 1`` positions before the query. A Transformer-XL can only copy it when that distance lies within
what its memory lets the query reach, so per-position accuracy measures the context a model actually uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.models.transformer_xl import (
    TransformerXLConfig,
    TransformerXLLMHeadModel,
)
from course_lib.transfer import linear_warmup_schedule


def repeated_patterns(n: int, period: int, vocab_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """[n, length] token ids: each row one random pattern of ``period`` tokens, repeated."""
    pattern = torch.randint(vocab_size, (n, period), generator=generator)
    return pattern.repeat(1, length // period + 1)[:, :length]


def train_in_segments(config: TransformerXLConfig, make_batch: Callable[[torch.Generator], torch.Tensor],
                      steps: int, lr: float = 1e-2, seed: int = 0,
                      device: torch.device | str = "cpu") -> TransformerXLLMHeadModel:
    """A fresh model trained with recurrence (memory carried, detached) on ``make_batch``'s [batch, tokens + 1] windows.

    One thread (matrices this small run faster on one), AdamW, linear warm-up over the first tenth of the steps.
    The batches come from a generator seeded with ``seed``, so models trained with the same seed see the same data.
    """
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = TransformerXLLMHeadModel(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        scheduler = linear_warmup_schedule(optimizer, total_steps=steps, warmup_steps=steps // 10)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            window = make_batch(generator).to(device)                        # [batch, tokens + 1]
            loss = model.forward_in_segments(window[:, :-1], labels=window[:, 1:]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def accuracy_by_position(model: TransformerXLLMHeadModel, sequences: torch.Tensor,
                         last_segments: int = 1) -> torch.Tensor:
    """[segment_len] next-token accuracy by position inside the segment, over the last ``last_segments`` segments.

    ``sequences`` [n, tokens + 1] is read segment by segment with the model's memory; the last segments are the
    ones whose memory has been filled by the segments before them.
    """
    segment_len = model.config.segment_len
    logits = model.forward_in_segments(sequences[:, :-1]).logits                  # [n, tokens, vocab]
    correct = (logits.argmax(-1) == sequences[:, 1:]).float()                     # [n, tokens]
    tail = correct[:, -last_segments * segment_len:]
    return tail.reshape(len(sequences), last_segments, segment_len).mean((0, 1))

