"""Benchmark: evaluation cost per predicted token, vanilla sliding window vs Transformer-XL (Dai et al. 2019, Table 9).

Run:  python benchmarks/bench_xl_eval.py            (about a minute on one CPU core)
      python benchmarks/bench_xl_eval.py --lengths 32 64 128 --device cuda
Prints the table of speed-ups; the target is a speed-up of at least L/2 from L = 128 to 1024, as the paper's
measured ratios (363x at 800 ... 1,874x at 3,800) are about L/2.
"""

from __future__ import annotations

import argparse
import time

from course_lib.training.eval_speed import BENCHMARK_CONFIG, format_speed_table, measure_eval_speedup


def main() -> None:
    """Parse the options, measure, print the table and whether every row from L=128 meets L/2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--segment-len", type=int, default=None, help="XL's segment length (default min(L, 256))")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = BENCHMARK_CONFIG
    print(f"{config.n_layers} layers, dim={config.dim}, {config.n_heads} heads of {config.head_dim}, "
          f"hidden_dim={config.hidden_dim}, vocab={config.vocab_size}, device={args.device}")
    start = time.perf_counter()
    rows = measure_eval_speedup(args.lengths, config, segment_len=args.segment_len, repeats=args.repeats,
                                device=args.device)
    print(format_speed_table(rows))
    checked = [row for row in rows if row.attention_len >= 128]
    verdict = all(row.speedup >= row.attention_len / 2 for row in checked)
    print(f"speed-up >= L/2 for every L >= 128: {verdict}   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
