"""scripts/pretrain.py under torchrun: 2 CPU processes (DDP over gloo) hold equal weights, resume, and equal 1 process.

Each run trains a tiny GPT (one layer, 16 wide) for a few steps through the script's own ``train``; a small launcher
saves every process's weights afterwards, so the test compares what each rank holds, not only what rank 0 wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = """
import os, sys
import torch
sys.path.insert(0, {scripts!r})
import pretrain
from course_lib.pretraining.distributed import start_processes, stop_processes

from course_lib.models.gpt import GPTConfig
from course_lib.pretraining.recipes import Recipe

TINY = Recipe("bpe", GPTConfig(vocab_size=8192, context_length=128, dim=16, n_layers=1, n_heads=2, dropout=0.0,
                               attn_dropout=0.0),
              steps=4, batch_size=4, length=32, lr=1e-2, warmup=2, eval_every=2)
weights, argv = sys.argv[1], sys.argv[2:]
processes = start_processes("cpu")
try:
    model = pretrain.train(pretrain.parse_args(argv), TINY, processes)
finally:
    stop_processes(processes)
torch.save(model.state_dict(), os.path.join(weights, f"rank{{processes.rank}}.pt"))
"""

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this torch build has no torch.distributed with gloo")


def run(tmp_path: Path, name: str, processes: int, *options: str) -> dict[int, dict[str, torch.Tensor]]:
    """Train in ``processes`` processes (torchrun when more than one); the weights each one holds afterwards."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(scripts=str(ROOT / "scripts")))
    weights = tmp_path / name
    weights.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*(torchrun if processes > 1 else [sys.executable]), str(launcher), str(weights), "gpt2",
               "--out", str(tmp_path / "out" / name), "--runs", str(tmp_path / "runs"), *options]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(command, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {rank: torch.load(weights / f"rank{rank}.pt", weights_only=True) for rank in range(processes)}


def assert_equal_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **(tolerance or {"atol": 0, "rtol": 0}), msg=key)


def test_two_processes_keep_one_model_resume_and_match_one_process(tmp_path):
    # Interrupted after the first step (a deadline of 0 minutes): both ranks hold the same model, nothing written yet.
    stopped = run(tmp_path, "stopped", 2, "--minutes", "0")
    assert_equal_weights(stopped[0], stopped[1])
    assert not (tmp_path / "out" / "stopped").exists(), "an interrupted run must not write a checkpoint"
    state = torch.load(tmp_path / "runs" / "gpt2" / "state.pt", weights_only=True)
    assert state["step"] == 1 and len(state["rng"]) == 2  # rank 0 wrote it, with every rank's random state

    resumed = run(tmp_path, "resumed", 2, "--resume")  # steps 2 to 4
    assert_equal_weights(resumed[0], resumed[1])  # DDP: every rank holds the same model after every step
    config = json.loads((tmp_path / "out" / "resumed" / "gpt2" / "config.json").read_text())
    assert config["training"]["processes"] == 2 and [row["step"] for row in config_curve(tmp_path, "resumed")] == [2, 4]

    # One process draws the same global batches, so the same 4 steps give the same model (up to float summing order).
    # Training moved the weights far more than that: the comparison can tell a wrong step, batch or optimizer state.
    alone = run(tmp_path, "alone", 1)
    assert_equal_weights(alone[0], resumed[0], atol=1e-5, rtol=1e-4)
    assert json.loads((tmp_path / "out" / "alone" / "gpt2" / "config.json").read_text())["training"]["processes"] == 1
    moved = max(float((alone[0][key] - stopped[0][key]).abs().max()) for key in alone[0])
    assert moved > 1e-3, f"steps 2 to 4 changed the weights by at most {moved}"


def config_curve(tmp_path: Path, name: str) -> list[dict]:
    """The rows of curve.csv that rank 0 wrote for run ``name``."""
    lines = (tmp_path / "out" / name / "gpt2" / "curve.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), (float(v) for v in line.split(",")))) for line in lines[1:]]


def test_each_process_keeps_its_contiguous_share_of_the_global_batch():
    from course_lib.pretraining.distributed import Processes, local_share, start_processes

    batch = {"input_ids": torch.arange(12).view(6, 2), "labels": torch.arange(6)}
    shares = [local_share(batch, Processes(rank, 3)) for rank in range(3)]
    assert [s["labels"].tolist() for s in shares] == [[0, 1], [2, 3], [4, 5]]
    assert torch.equal(torch.cat([s["input_ids"] for s in shares]), batch["input_ids"])  # nothing lost or repeated
    with pytest.raises(ValueError, match="6 rows cannot be split evenly among 4 processes"):
        local_share(batch["labels"], Processes(0, 4))
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda', got 'tpu'"):
        start_processes("tpu")
