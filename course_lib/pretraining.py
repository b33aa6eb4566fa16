"""Pretraining objectives for the course checkpoints: next-token LM windows, BERT's MLM + NSP, and their losses.

- ``random_windows``: random stretches of a long id tensor, the LM batches of GPT, Transformer-XL and the ELMo biLM.
- ``next_sentence_pairs``: BERT's Task #2 (Devlin et al. 2019, Sec. 3.1): segment B is the text that follows
  segment A with probability 0.5 (IsNext, label 0), a random stretch of the corpus otherwise (NotNext, label 1).
- ``bert_batch``: ``[CLS] A [SEP] B [SEP]`` with segment ids and padding, then Task #1's masking
  (``course_lib.text.masking.mask_tokens``: 15%, 80/10/10).
- ``lm_window_loss`` / ``bert_losses``, and ``PretrainingObjective``: the loss of one batch for each model kind.
- Data parallelism under ``torchrun`` (PyTorch DistributedDataParallel, Li et al. 2020): ``start_processes``,
  ``local_share`` of each global batch, and the few collectives the training loop needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from course_lib.text.masking import IGNORE_INDEX, mask_tokens

KINDS = ("gpt", "bert", "transformer_xl", "elmo")
IS_NEXT, NOT_NEXT = 0, 1  # BertForPreTraining's next-sentence classes


def random_windows(ids: torch.Tensor, length: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch_size, length]`` stretches of the 1-D ``ids`` starting at uniformly random offsets."""
    if ids.dim() != 1 or len(ids) < length:
        raise ValueError(f"need a 1-D id tensor of at least length={length} tokens, got shape {tuple(ids.shape)}")
    starts = torch.randint(len(ids) - length + 1, (batch_size,), generator=generator)  # [batch]
    return ids[starts[:, None] + torch.arange(length)]  # [batch, length]


@dataclass
class SentencePair:
    """One NSP example: token ids of segments A and B, and the label (0 = IsNext, 1 = NotNext)."""

    a: list[int]
    b: list[int]
    label: int


def next_sentence_pairs(ids: torch.Tensor, n_pairs: int, segment_len: int,
                        generator: torch.Generator) -> list[SentencePair]:
    """``n_pairs`` NSP examples of two ``segment_len``-token segments cut from the 1-D corpus ``ids``.

    A starts at a random offset. With probability 0.5 B is the next ``segment_len`` tokens (IsNext); otherwise B
    starts at a random offset at least ``2 * segment_len`` away from A's end, so it never continues A (NotNext).
    """
    if len(ids) < 6 * segment_len:
        raise ValueError(f"the corpus ({len(ids)} tokens) must hold at least 6 * segment_len = {6 * segment_len}")
    pairs = []
    last_start = len(ids) - 2 * segment_len
    for _ in range(n_pairs):
        start = int(torch.randint(last_start + 1, (1,), generator=generator))
        a = ids[start:start + segment_len]
        if float(torch.rand((), generator=generator)) < 0.5:
            pairs.append(SentencePair(a.tolist(), ids[start + segment_len:start + 2 * segment_len].tolist(), IS_NEXT))
            continue
        while True:  # a random segment far from A's continuation
            other = int(torch.randint(len(ids) - segment_len + 1, (1,), generator=generator))
            if abs(other - (start + segment_len)) >= 2 * segment_len:
                break
        pairs.append(SentencePair(a.tolist(), ids[other:other + segment_len].tolist(), NOT_NEXT))
    return pairs


@dataclass(frozen=True)
class SpecialIds:
    """The WordPiece ids BERT's input format needs."""

    cls: int
    sep: int
    pad: int
    mask: int
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialIds:
        """Read [CLS], [SEP], [PAD], [MASK] from a ``tokenizers.Tokenizer``; ValueError naming any that is missing."""
        found = {name: tokenizer.token_to_id(f"[{name.upper()}]") for name in ("cls", "sep", "pad", "mask")}
        missing = [f"[{name.upper()}]" for name, i in found.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer has no {', '.join(missing)}: BERT needs a WordPiece vocabulary")
        return cls(**found, vocab_size=tokenizer.get_vocab_size())


def bert_batch(pairs: list[SentencePair], special: SpecialIds, generator: torch.Generator,
               mlm_probability: float = 0.15) -> dict[str, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` rows, padded, masked: the inputs and both labels of ``BertForPreTraining``."""
    rows = [[special.cls, *p.a, special.sep, *p.b, special.sep] for p in pairs]
    longest = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), longest), special.pad, dtype=torch.long)  # [batch, tokens]
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for i, (row, pair) in enumerate(zip(rows, pairs)):
        input_ids[i, :len(row)] = torch.tensor(row)
        token_type_ids[i, len(pair.a) + 2:len(row)] = 1  # segment B, including its closing [SEP]
        attention_mask[i, :len(row)] = 1
    masked, mlm_labels = mask_tokens(input_ids, special.mask, special.vocab_size,
                                     special_ids=(special.cls, special.sep, special.pad),
                                     mlm_probability=mlm_probability, generator=generator)
    return {"input_ids": masked, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "mlm_labels": mlm_labels, "next_sentence_labels": torch.tensor([p.label for p in pairs])}


def bert_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MLM and NSP losses (and accuracies) of a ``BertForPreTraining``; ``loss`` = MLM + NSP as in its forward.

    The MLM head runs on the masked positions only (15% of the tokens), which gives the same loss as the model's
    forward at a fraction of the cost of scoring every position against the whole vocabulary.
    """
    body = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    chosen = batch["mlm_labels"] != IGNORE_INDEX  # [batch, tokens]
    mlm_logits = model.mlm(body.hidden_states[-1][chosen])  # [chosen, vocab]
    targets = batch["mlm_labels"][chosen]
    nsp_logits = model.next_sentence(body.pooled)  # [batch, 2]
    mlm_loss = F.cross_entropy(mlm_logits, targets)
    nsp_loss = F.cross_entropy(nsp_logits, batch["next_sentence_labels"])
    return {"loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
            "mlm_accuracy": (mlm_logits.argmax(-1) == targets).float().mean(),
            "nsp_accuracy": (nsp_logits.argmax(-1) == batch["next_sentence_labels"]).float().mean()}


def lm_window_loss(kind: str, model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """The LM loss of ``[batch, length + 1]`` windows for a ``"gpt"``, ``"transformer_xl"`` or ``"elmo"`` model.

    GPT and Transformer-XL: next-token cross-entropy (XL reads the window segment by segment, carrying its memory).
    ELMo: the biLM's joint objective, forward NLL + backward NLL.
    """
    inputs, targets = windows[:, :-1], windows[:, 1:]  # [batch, length] each
    if kind == "gpt":
        logits = model(inputs).logits  # [batch, length, vocab]
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    if kind == "transformer_xl":
        return model.forward_in_segments(inputs, labels=targets).loss
    if kind == "elmo":
        return model(windows).loss
    raise ValueError(f"kind must be one of {KINDS[:1] + KINDS[2:]} for LM windows, got {kind!r}")


class PretrainingObjective(nn.Module):
    """A model and its pretraining loss as one module, so that DistributedDataParallel wraps the whole forward."""

    def __init__(self, kind: str, model: nn.Module):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.model = kind, model

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if self.kind == "bert":
            return bert_losses(self.model, batch)["loss"]
        return lm_window_loss(self.kind, self.model, batch)


# ------------------------------------------------------------------------------ data parallel training (torchrun)
@dataclass(frozen=True)
class Processes:
    """This process's place in a ``torchrun`` job (rank ``rank`` of ``world_size``) and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that evaluates, prints and writes files."""
        return self.rank == 0


def start_processes(device: str = "auto") -> Processes:
    """Join the job ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK (nccl on GPUs, gloo on CPUs).

    Without torchrun (no WORLD_SIZE, or 1) this is a single process and no process group is created. ``device`` is
    ``"auto"`` (GPU ``LOCAL_RANK`` when CUDA is available, else the CPU), ``"cpu"`` or ``"cuda"``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' asked for, but torch sees no CUDA GPU")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                         f"use at most --nproc_per_node {torch.cuda.device_count()}")
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Processes(rank, world_size, chosen)


def stop_processes(processes: Processes) -> None:
    """Leave the process group that ``start_processes`` joined (nothing to do for a single process)."""
    if processes.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def local_share(batch: torch.Tensor | dict[str, torch.Tensor],
                processes: Processes) -> torch.Tensor | dict[str, torch.Tensor]:
    """This process's contiguous share of the rows of a global batch, on its device.

    Every process draws the same global batch and keeps ``batch_size / world_size`` rows, so N processes together
    see exactly the batches one process would, and DDP's averaged gradient is the single-process gradient (for LM
    windows exactly; for BERT's MLM up to how many tokens each share happens to mask).
    """
    if isinstance(batch, dict):
        return {key: local_share(value, processes) for key, value in batch.items()}
    if len(batch) % processes.world_size:
        raise ValueError(f"a batch of {len(batch)} rows cannot be split evenly among {processes.world_size} processes")
    rows = len(batch) // processes.world_size
    return batch[processes.rank * rows:(processes.rank + 1) * rows].to(processes.device)


def mean_over_processes(value: float, processes: Processes) -> float:
    """The mean of ``value`` over all processes (every process must call this at the same point)."""
    if processes.world_size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=processes.device)
    dist.all_reduce(total)
    return float(total) / processes.world_size


def any_process(flag: bool, processes: Processes) -> bool:
    """True on every process when ``flag`` is true on any one (so that all stop at the same step)."""
    if processes.world_size == 1:
        return flag
    found = torch.tensor([int(flag)], device=processes.device)
    dist.all_reduce(found, op=dist.ReduceOp.MAX)
    return bool(found)


def gather_objects(value, processes: Processes) -> list:
    """``[value of rank 0, value of rank 1, ...]`` on every process (e.g. each process's random-number state)."""
    if processes.world_size == 1:
        return [value]
    values = [None] * processes.world_size
    dist.all_gather_object(values, value)
    return values


def random_state(processes: Processes) -> dict:
    """This process's random-number state: its dropout masks come from it, so a resumed run needs it back."""
    state = {"cpu": torch.get_rng_state()}
    if processes.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(processes.device)
    return state


def restore_random_state(state: dict, processes: Processes) -> None:
    """Put back what ``random_state`` recorded."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], processes.device)


def from_main_process(value, processes: Processes):
    """Rank 0's ``value`` on every process (other ranks pass None): a resumed state read from one file, one disk."""
    if processes.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
