"""Loaders that turn texts into padded batches of token ids (classification) or blocks of a corpus (language models).

A batch is a dict of tensors whose keys match the models' forward arguments:
``input_ids``, ``attention_mask`` (1 = real token, 0 = padding), ``token_type_ids`` (segment A = 0, B = 1), and
``labels`` for classification or ``targets`` (the next token at every position) for language modelling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset, Sampler

PAD_CANDIDATES = ("[PAD]", "<pad>", "<|endoftext|>")


def pad_id(tokenizer: Tokenizer) -> int:
    """The id used for padding: ``[PAD]`` for WordPiece, ``<|endoftext|>`` for GPT-2-style BPE (masked anyway)."""
    for token in PAD_CANDIDATES:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0


def _truncating_copy(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """A private copy that truncates to ``max_length`` (longest segment first): the caller's settings stay as they were."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length)
    return tok


def encode_texts(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Tokenize, truncate to ``max_length`` and pad to the longest: ``{input_ids, attention_mask, token_type_ids}``."""
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(pairs)} second segments")
    tok = _truncating_copy(tokenizer, max_length)
    tok.enable_padding(pad_id=pad_id(tokenizer), pad_token=tokenizer.id_to_token(pad_id(tokenizer)) or "")
    inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
    encodings = tok.encode_batch(inputs)
    return {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
        "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
    }


class _Encoded(Dataset):
    def __init__(self, rows: list[dict[str, torch.Tensor]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


def _pad_collate(padding_id: int):
    def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)  # dynamic padding: only as long as this batch needs
        batch = {}
        for key, fill in (("input_ids", padding_id), ("attention_mask", 0), ("token_type_ids", 0)):
            batch[key] = torch.full((len(rows), longest), fill, dtype=torch.long)
            for i, r in enumerate(rows):
                batch[key][i, : len(r[key])] = r[key]
        batch["labels"] = torch.stack([r["labels"] for r in rows])
        return batch

    return collate


def text_batches(
    texts: Sequence[str],
    labels: Sequence[int],
    tokenizer: Tokenizer,
    batch_size: int = 32,
    max_length: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    pairs: Sequence[str] | None = None,
    by_length: bool = False,
) -> DataLoader:
    """Batches for sequence classification, tokenized once up front and padded per batch.

    ``by_length=True`` groups messages of similar length into a batch, so almost no padding is computed: several
    times faster on short, uneven texts such as SMS. Without ``shuffle`` the examples are simply sorted by length
    (evaluation); with it, each epoch shuffles, sorts within buckets of a few batches, and shuffles the batches
    (training: random batches, but little padding).
    """
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
    if len(texts) == 0:
        raise ValueError("no texts to batch")
    tok = _truncating_copy(tokenizer, max_length)
    inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
    rows = [
        {
            "input_ids": torch.tensor(e.ids, dtype=torch.long),
            "attention_mask": torch.tensor(e.attention_mask, dtype=torch.long),
            "token_type_ids": torch.tensor(e.type_ids, dtype=torch.long),
            "labels": torch.tensor(int(y)),
        }
        for e, y in zip(tok.encode_batch(inputs), labels)
    ]
    collate = _pad_collate(pad_id(tokenizer))
    generator = torch.Generator().manual_seed(seed)
    if by_length and shuffle:
        sampler = LengthBucketSampler([len(r["input_ids"]) for r in rows], batch_size, generator)
        return DataLoader(_Encoded(rows), batch_sampler=sampler, collate_fn=collate)
    if by_length:
        rows.sort(key=lambda r: len(r["input_ids"]))
    return DataLoader(_Encoded(rows), batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=collate)


class LengthBucketSampler(Sampler[list[int]]):
    """Random batches of similar length: shuffle, sort within buckets of ``bucket`` batches, shuffle the batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, bucket: int = 8):
        if batch_size < 1 or bucket < 1:
            raise ValueError(f"batch_size and bucket must be >= 1, got {batch_size} and {bucket}")
        self.lengths, self.batch_size, self.generator, self.bucket = list(lengths), batch_size, generator, bucket

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def encode_corpus(text: str, tokenizer: Tokenizer) -> torch.Tensor:
    """The whole text as one long 1-D tensor of token ids (no [CLS]/[SEP]); encoded line by line, in parallel."""
    lines = text.splitlines(keepends=True)
    encodings = tokenizer.encode_batch(lines, add_special_tokens=False)
    return torch.tensor([i for e in encodings for i in e.ids], dtype=torch.long)


class _Blocks(Dataset):
    def __init__(self, ids: torch.Tensor, block_size: int, starts: torch.Tensor):
        self.ids, self.block_size, self.starts = ids, block_size, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        chunk = self.ids[self.starts[i] : self.starts[i] + self.block_size + 1]
        return {"input_ids": chunk[:-1], "targets": chunk[1:]}  # the target at t is the token at t + 1


def lm_batches(
    ids: torch.Tensor,
    block_size: int,
    batch_size: int = 16,
    shuffle: bool = True,
    seed: int = 0,
    max_blocks: int | None = None,
) -> DataLoader:
    """Non-overlapping blocks of ``block_size`` tokens from a 1-D id tensor, with next-token ``targets``."""
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    n_blocks = (len(ids) - 1) // block_size
    if n_blocks < 1:
        raise ValueError(f"{len(ids)} tokens are fewer than one block of {block_size} + 1")
    starts = torch.arange(n_blocks) * block_size
    if max_blocks is not None:
        # an evenly spread subset, so a small run still sees the whole corpus rather than its first pages
        starts = starts[torch.linspace(0, n_blocks - 1, min(max_blocks, n_blocks)).long()]
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_Blocks(ids, block_size, starts), batch_size=batch_size, shuffle=shuffle, generator=generator)


def random_windows(ids: torch.Tensor, length: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch_size, length]`` stretches of the 1-D ``ids`` starting at uniformly random offsets."""
    if ids.dim() != 1 or len(ids) < length:
        raise ValueError(f"need a 1-D id tensor of at least length={length} tokens, got shape {tuple(ids.shape)}")
    starts = torch.randint(len(ids) - length + 1, (batch_size,), generator=generator)  # [batch]
    return ids[starts[:, None] + torch.arange(length)]  # [batch, length]
