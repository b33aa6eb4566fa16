"""Evaluation cost per predicted token: vanilla sliding window vs Transformer-XL's memory (Dai et al. 2019, Table 9).

The vanilla model of Al-Rfou et al. (2018) has a fixed context of L tokens and no memory, so for every token it
predicts it recomputes its whole window: L positions through every layer, for one prediction. Transformer-XL reads a
segment of ``segment_len`` tokens against a memory of ``mem_len = L`` cached hidden states (with ``same_length``
every query sees exactly L tokens, as in the authors' evaluation) and predicts all of them; like the authors' code, it
projects the cached states' keys and values again in every segment. Both models have the same width and depth; the
vanilla one uses absolute positions, as it was trained.

Timing: on a CPU both models run on one thread and we count that thread's CPU time (``time.thread_time``), so other
programs on a shared machine do not inflate either number; on a GPU, wall-clock time after synchronising. Each
number is the best of ``repeats`` interleaved runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel

# The authors' WikiText-103 width (1024 wide, 16 heads of 64, inner 4096) and a byte vocabulary like enwik8's.
# Depth does not change the per-layer ratio, so two layers keep the benchmark to a minute or so.
BENCHMARK_CONFIG = TransformerXLConfig(vocab_size=256, n_layers=2, n_heads=16, dim=1024, head_dim=64,
                                       hidden_dim=4096, dropout=0.0, attn_dropout=0.0)


@dataclass
class SpeedRow:
    """One attention length: seconds per predicted token for both models."""

    attention_len: int
    segment_len: int
    vanilla_seconds: float
    xl_seconds: float

    @property
    def speedup(self) -> float:
        """How many times cheaper a predicted token is with the memory."""
        return self.vanilla_seconds / self.xl_seconds


def _clock(device: torch.device) -> Callable[[], float]:
    """CPU time of this thread on a CPU; synchronised wall-clock time on a GPU."""
    if device.type == "cuda":
        def wall_clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return wall_clock
    return time.thread_time


def vanilla_seconds_per_token(model: TransformerXLLMHeadModel, tokens: torch.Tensor, attention_len: int,
                              predictions: int) -> float:
    """Predict ``predictions`` tokens, each from a fresh forward pass over the ``attention_len`` tokens before it."""
    clock = _clock(tokens.device)
    start = clock()
    for end in range(attention_len, attention_len + predictions):
        window = tokens[:, end - attention_len:end]  # [1, L]: the whole context, recomputed
        last_hidden = model.transformer(window).hidden_states[-1][:, -1]  # only the last position predicts
        model.lm_head(last_hidden)  # [1, vocab]
    return (clock() - start) / predictions


def xl_seconds_per_token(model: TransformerXLLMHeadModel, tokens: torch.Tensor, segment_len: int,
                         segments: int) -> float:
    """Fill the memory, then time ``segments`` segments of ``segment_len`` predicted tokens each."""
    clock = _clock(tokens.device)
    mems, position = None, 0
    while position < model.config.mem_len:  # warm-up: memory full
        mems = model(tokens[:, position:position + segment_len], mems=mems).mems
        position += segment_len
    start = clock()
    for _ in range(segments):
        mems = model(tokens[:, position:position + segment_len], mems=mems).mems  # [1, T, vocab] logits
        position += segment_len
    return (clock() - start) / (segments * segment_len)


def measure_eval_speedup(attention_lengths: Sequence[int] = (64, 128, 256, 512, 1024),
                         config: TransformerXLConfig = BENCHMARK_CONFIG, segment_len: int | None = None,
                         vanilla_predictions: int = 3, xl_tokens: int = 1024, repeats: int = 3,
                         device: str | torch.device = "cpu", seed: int = 0) -> list[SpeedRow]:
    """Time both models at every attention length L (XL: ``mem_len = L``, ``same_length``).

    ``segment_len`` (XL's segment) defaults to min(L, 256). On one CPU core the default range takes about a
    minute; the notebook's quick version, ``measure_eval_speedup((32, 64, 128, 256), repeats=1, xl_tokens=512)``,
    about ten seconds.
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # one thread, whose CPU time we count
    try:
        torch.manual_seed(seed)
        rows = []
        for attention_len in attention_lengths:
            segment = segment_len or min(attention_len, 256)
            segments = max(2, xl_tokens // segment)
            vanilla = TransformerXLLMHeadModel(replace(config, relative_positions=False, mem_len=0,
                                                       same_length=False, segment_len=attention_len)).to(device).eval()
            xl = TransformerXLLMHeadModel(replace(config, relative_positions=True, mem_len=attention_len,
                                                  same_length=True, segment_len=segment)).to(device).eval()
            needed = attention_len + segment * (segments + 1) + vanilla_predictions
            tokens = torch.randint(0, config.vocab_size, (1, needed), device=device)
            vanilla_times, xl_times = [], []
            with torch.inference_mode():
                vanilla_seconds_per_token(vanilla, tokens, attention_len, 1)  # warm-up
                for _ in range(repeats):  # interleaved, so a busy moment hits both
                    vanilla_times.append(vanilla_seconds_per_token(vanilla, tokens, attention_len,
                                                                   vanilla_predictions))
                    xl_times.append(xl_seconds_per_token(xl, tokens, segment, segments))
            rows.append(SpeedRow(attention_len, segment, min(vanilla_times), min(xl_times)))
    finally:
        torch.set_num_threads(threads)
    return rows


def format_speed_table(rows: Sequence[SpeedRow]) -> str:
    """A text table: L, XL's segment length, ms per token for each model, speed-up and speed-up / L."""
    lines = [f"{'L':>6} {'segment':>8} {'vanilla ms/token':>17} {'XL ms/token':>12} {'speed-up':>9} {'speed-up/L':>11}"]
    for row in rows:
        lines.append(f"{row.attention_len:>6} {row.segment_len:>8} {1e3 * row.vanilla_seconds:>17.2f} "
                     f"{1e3 * row.xl_seconds:>12.3f} {row.speedup:>8.0f}x {row.speedup / row.attention_len:>11.2f}")
    return "\n".join(lines)
