#!/usr/bin/env python3
"""Pretrain one of the course's small checkpoints on the Shakespeare corpus, reproducibly.

    python scripts/pretrain.py bert                  # train, evaluate, write data/checkpoints/bert/
    python scripts/pretrain.py gpt2 --minutes 5      # stop after 5 minutes (state kept in runs/pretrain/gpt2/)
    python scripts/pretrain.py gpt2 --resume         # ... and go on from there: the same result as one run
    torchrun --nproc_per_node 4 scripts/pretrain.py gpt2     # 4 processes (DDP: gloo on CPUs, nccl on GPUs)

Seeded: batch k is drawn by a generator seeded with (seed, k), and the dropout generators' states travel in the state
file, so an interrupted and resumed run gives the same weights as an uninterrupted one. Under torchrun each of the N
processes (one per GPU, or N on the CPU) trains on its 1/N share of the same batch k and DistributedDataParallel
(Li et al. 2020) averages the gradients, so N processes train the model one would; only rank 0 evaluates and writes
files. Resume with the same N; on several machines only rank 0's disk needs the state file. Writes
``model.safetensors``, ``config.json`` (config, recipe, command, wall time, held-out quality against unigram/bigram
baselines), ``curve.csv`` and ``curve.png``. Afterwards record the sha256 in data/SHA256SUMS (the script prints the
lines).
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.paths import sha256_file
from course_lib.pretraining.checkpoints import KIND_OF, NAMES, build_model, reference_loss, save_checkpoint
from course_lib.pretraining.distributed import (
    Processes,
    any_process,
    from_main_process,
    gather_objects,
    local_share,
    mean_over_processes,
    random_state,
    restore_random_state,
    start_processes,
    stop_processes,
)
from course_lib.pretraining.evaluation import evaluate
from course_lib.pretraining.objectives import PretrainingObjective, SpecialIds
from course_lib.pretraining.recipes import RECIPES, Recipe, learning_rate, training_batch
from course_lib.text.batching import encode_corpus
from course_lib.text.corpus import load_shakespeare
from course_lib.text.tokenizers import load_tokenizer


def plot_curve(rows: list[dict], path: Path, title: str) -> None:
    """Training and held-out (reference slice) loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["train_loss"] for r in rows], label="training (mean since last point)")
    ax.plot([r["step"] for r in rows], [r["reference_loss"] for r in rows], "o-", ms=3, label="held-out slice")
    ax.set(xlabel="step", ylabel="loss (nats)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------ training
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much training time (resumable)")
    parser.add_argument("--resume", action="store_true", help="continue from runs/pretrain/NAME/state.pt")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's step count (smoke tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (recorded times use 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: this process's GPU when CUDA is available, else the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "checkpoints")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pretrain")
    return parser.parse_args(argv)


def on_cpu(model: nn.Module) -> nn.Module:
    """The model itself on the CPU, else a CPU copy: evaluation and checkpoints are always computed on the CPU."""
    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()


def train(args: argparse.Namespace, recipe: Recipe, processes: Processes) -> nn.Module:
    """Train ``args.name`` with ``recipe`` in this process; rank 0 writes the state, the curve and the checkpoint.

    Under ``torchrun --nproc_per_node N`` every process runs this function on its share of each batch
    (``local_share``) and DistributedDataParallel averages the gradients, so all N copies of the model stay equal.
    Returns this process's trained model.
    """
    main_process = processes.is_main
    torch.set_num_threads(args.threads)
    kind = KIND_OF[args.name]
    if args.steps is not None:
        recipe = replace(recipe, steps=args.steps, warmup=min(recipe.warmup, args.steps), eval_every=args.steps)
    if recipe.batch_size % processes.world_size:
        raise ValueError(f"{args.name}'s batch of {recipe.batch_size} rows cannot be split evenly among "
                         f"{processes.world_size} processes: use a --nproc_per_node that divides it")
    tokenizer = load_tokenizer(recipe.tokenizer)
    special = SpecialIds.from_tokenizer(tokenizer) if kind == "bert" else None
    train_ids = encode_corpus(load_shakespeare("train"), tokenizer)
    valid_ids = encode_corpus(load_shakespeare("valid"), tokenizer) if main_process else None

    torch.manual_seed(recipe.seed)
    model = build_model(kind, asdict(recipe.config)).to(processes.device)  # the same initial weights in every process
    if processes.rank > 0:  # its own dropout masks (rank 0 keeps the seed), from seeds no batch generator uses
        torch.manual_seed(2**40 + recipe.seed * 1_000_003 + processes.rank)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98))
    state_path = args.runs / args.name / "state.pt"
    step, seconds, curve = 0, 0.0, []
    if args.resume:  # rank 0 reads the state file and hands it to the others (their disks need not hold it)
        state = from_main_process(torch.load(state_path, weights_only=True, map_location="cpu")
                                  if main_process else None, processes)
        rngs = state["rng"] if isinstance(state["rng"], list) else [{"cpu": state["rng"]}]
        if len(rngs) != processes.world_size:
            raise ValueError(f"{state_path} was saved by {len(rngs)} process(es); resume it with as many "
                             f"(torchrun --nproc_per_node {len(rngs)}), not {processes.world_size}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_state(rngs[processes.rank], processes)
        step, seconds, curve = state["step"], state["seconds"], state["curve"]
        if main_process:
            print(f"resumed {args.name} at step {step} ({seconds:.0f} s trained)")
    objective = PretrainingObjective(kind, model)
    if processes.world_size > 1:  # gradients averaged over the processes during backward
        objective = DistributedDataParallel(objective, device_ids=[processes.device.index]
                                            if processes.device.type == "cuda" else None)
    n_params = sum(p.numel() for p in model.parameters())
    if main_process:
        print(f"{args.name}: {kind}, {n_params / 1e6:.2f}M parameters, {recipe.steps} steps, "
              f"{len(train_ids):,} training tokens, {processes.world_size} process(es) on {processes.device.type}, "
              f"{torch.get_num_threads()} thread(s) each")

    def save_state():
        rngs = gather_objects(random_state(processes), processes)  # every process takes part; rank 0 writes
        if main_process:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rngs,
                        "step": step, "seconds": seconds, "curve": curve}, state_path)

    start, running = time.perf_counter() - seconds, []
    deadline = None if args.minutes is None else time.perf_counter() + 60 * args.minutes
    bar = tqdm(total=recipe.steps, initial=step, desc=args.name, disable=not main_process)
    model.train()
    while step < recipe.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        batch = training_batch(kind, recipe, train_ids, special, step)  # the global batch, the same everywhere
        loss = objective(local_share(batch, processes))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        running.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]:.3f}")
        if step % recipe.eval_every == 0 or step == recipe.steps:
            seconds = time.perf_counter() - start
            train_loss = mean_over_processes(sum(running) / len(running), processes)
            if main_process:
                curve.append({"step": step, "seconds": round(seconds, 1), "lr": learning_rate(recipe, step - 1),
                              "train_loss": round(train_loss, 4),
                              "reference_loss": round(reference_loss(kind, on_cpu(model), tokenizer), 4)})
            running = []
            model.train()
            save_state()
        out_of_time = deadline is not None and any_process(time.perf_counter() > deadline, processes)
        if out_of_time and step < recipe.steps:
            seconds = time.perf_counter() - start
            save_state()
            bar.close()
            if main_process:
                print(f"stopped at step {step} after {seconds:.0f} s; continue with the same command and --resume")
            return model
    bar.close()
    train_seconds = time.perf_counter() - start
    if not main_process:
        return model

    final = on_cpu(model)
    evaluation = evaluate(kind, final, train_ids, valid_ids, special, tokenizer.get_vocab_size())
    evaluation["reference_loss"] = reference_loss(kind, final, tokenizer)  # exact value the tests re-check
    command = f"python scripts/pretrain.py {args.name}" + (f" --steps {args.steps}" if args.steps else "")
    if processes.world_size > 1:
        command = command.replace("python", f"torchrun --nproc_per_node {processes.world_size}", 1)
    metadata = {"name": args.name, "kind": kind, "tokenizer": recipe.tokenizer, "parameters": n_params,
                "training": {"command": command, "train_seconds": round(train_seconds, 1),
                             "processes": processes.world_size, "device": processes.device.type,
                             "threads": torch.get_num_threads(), "torch": torch.__version__,
                             "recipe": {k: v for k, v in asdict(recipe).items() if k != "config"}},
                "evaluation": evaluation}
    folder = args.out / args.name
    save_checkpoint(final, folder, metadata)
    with open(folder / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    plot_curve(curve, folder / "curve.png", f"{args.name}: {n_params / 1e6:.2f}M parameters")
    print(f"trained in {train_seconds:.0f} s; held-out: {evaluation}")
    for file in ("model.safetensors", "config.json"):
        print(f"{sha256_file(folder / file)}  checkpoints/{args.name}/{file}")
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    processes = start_processes(args.device)
    try:
        train(args, RECIPES[args.name], processes)
    finally:
        stop_processes(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
