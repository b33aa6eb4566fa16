"""Data parallelism under ``torchrun`` (PyTorch DistributedDataParallel, Li et al. 2020) for ``scripts/pretrain.py``.

``start_processes`` joins the job, ``local_share`` cuts each global batch, and the few collectives the training loop
needs (means, flags, gathered objects, the random state of a resumed run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
