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
    parser.add_argument("--segment-len", type=int, default=None, help="XL's tgt_len (default min(L, 256))")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recompute-memory-keys", action="store_true",
                        help="project the memory's keys/values again every segment, as the authors' code does")
    args = parser.parse_args()

    config = BENCHMARK_CONFIG
    print(f"{config.n_layer} layers, d_model={config.d_model}, {config.n_head} heads of {config.d_head}, "
          f"d_inner={config.d_inner}, vocab={config.vocab_size}, device={args.device}, "
          f"memory keys/values {'recomputed' if args.recompute_memory_keys else 'reused'}")
    start = time.perf_counter()
    rows = measure_eval_speedup(args.lengths, config, segment_len=args.segment_len, repeats=args.repeats,
                                device=args.device, reuse_keys_values=not args.recompute_memory_keys)
    print(format_speed_table(rows))
    checked = [row for row in rows if row.attention_len >= 128]
    verdict = all(row.speedup >= row.attention_len / 2 for row in checked)
    print(f"speed-up >= L/2 for every L >= 128: {verdict}   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
