#!/usr/bin/env python3
"""How long loading the course data takes: the spam splits and the Shakespeare corpus, first time and again.

    python benchmarks/bench_data_loading.py

"First" includes reading each file and checking its sha256; "again" is what every later call in the same kernel
costs (the verified text is cached). Import time of course_lib's loaders is printed separately.
"""

import time

start = time.perf_counter()
from course_lib.text.corpus import load_shakespeare  # noqa: E402
from course_lib.text.spam import load_spam  # noqa: E402
from course_lib.text.tokenizers import load_tokenizer  # noqa: E402

imported = time.perf_counter() - start


def timed(label: str) -> float:
    start = time.perf_counter()
    splits = [load_spam(s) for s in ("train", "valid", "test")]
    corpus = [load_shakespeare(s) for s in ("train", "valid")]
    tokenizer = load_tokenizer("wordpiece")
    seconds = time.perf_counter() - start
    print(f"{label:<6} {seconds * 1000:8.1f} ms  ({sum(map(len, splits))} messages, "
          f"{sum(map(len, corpus)) / 1e6:.1f} MB of text, vocab {tokenizer.get_vocab_size()})")
    return seconds


print(f"import {imported * 1000:8.1f} ms")
timed("first")
timed("again")
