"""AdamW's step on the fine-tuned MiniLM classifier: torch's default (for-loop), foreach and fused implementations.

    python benchmarks/bench_optimizer.py              # about 10 s on 2 idle CPU cores
    python benchmarks/bench_optimizer.py --threads 1  # steadier on a shared machine

The notebooks fine-tune all 22.7M weights of all-MiniLM-L6-v2 (half of them its 30,522 x 384 embedding table) with
AdamW; each step updates every weight and both moment estimates. The three implementations compute the same update
(checked here to 1e-6 after the timed steps), in rounds that alternate between them; the median time per step of each
is shown with its ratio to the default.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib.models.bert import BertConfig, BertForSequenceClassification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per implementation and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    reference = BertForSequenceClassification(BertConfig.minilm(), n_classes=2)
    kinds = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    models, optimizers = {}, {}
    for name, options in kinds.items():
        model = BertForSequenceClassification(BertConfig.minilm(), n_classes=2)
        model.load_state_dict(reference.state_dict())
        generator = torch.Generator().manual_seed(1)
        for p in model.parameters():  # the same made-up gradient for every implementation
            p.grad = torch.randn(p.shape, generator=generator) * 1e-3
        models[name], optimizers[name] = model, torch.optim.AdamW(model.parameters(), lr=1e-4, **options)

    times = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, optimizer in optimizers.items():
            optimizer.step()  # warm-up step (state allocation)
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            times[name].append((time.perf_counter() - start) / args.steps)

    n_params = sum(p.numel() for p in reference.parameters())
    print(f"AdamW step on {n_params / 1e6:.1f}M parameters, {torch.get_num_threads()} thread(s), "
          f"median of {args.rounds} rounds of {args.steps} steps")
    base = statistics.median(times["default"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<8} {median * 1000:7.1f} ms/step   {base / median:4.1f}x the default's speed")
    for name in ("foreach", "fused"):
        for a, b in zip(models["default"].parameters(), models[name].parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    print("same weights after every implementation's steps: yes")


if __name__ == "__main__":
    main()
