"""python -m zoology.bench data: time generating the Based Figure 2 training set (180,000 examples)."""

from __future__ import annotations

import argparse
import time

from zoology.data.mqar import MQARConfig

BASED_FIGURE2_TRAIN = [(64, 4, 100_000), (128, 8, 20_000), (256, 16, 20_000), (256, 32, 20_000), (256, 64, 20_000)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench data", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    segments = [MQARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n) for L, N, n in BASED_FIGURE2_TRAIN]
    segments[0].build(seed=0)
    times = []
    for rep in range(args.repeats):
        start = time.perf_counter()
        for i, seg in enumerate(segments):
            seg.build(seed=1000 * rep + i)
        times.append(time.perf_counter() - start)
    total = sum(s.num_examples for s in segments)
    best, median = min(times), sorted(times)[len(times) // 2]
    print(f"Based Figure 2 training set: {total:,} examples (MQAR, V=8192, random filler)")
    print(f"  median {median:.3f} s   best {best:.3f} s   ->  {total / median:,.0f} examples/s")
    return 0
