"""python -m zoology.bench data: examples/s of every task generator at L = 256 and 1024, of each MAD
task at its baseline (12,800 training sequences), and the time to generate the Based Figure 2
training set (180,000 examples).

`cpu s` is the process's CPU time summed over threads: far below threads × wall time means the
machine was busy and the wall-clock figures are pessimistic."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from zoology.data.ar import ARConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.data.presets import MAD_TASKS, MAD_TRAIN_EXAMPLES, based_figure2_train, mad_setting

EXAMPLES = {256: 20_000, 1024: 5_000}


def generators(L: int, n: int) -> list[tuple[str, Any]]:
    """(label, config) for each generator and filler mode at length L."""
    N = L // 4
    return [
        ("mqar", MQARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n)),
        ("mqar random_no_kv", MQARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n, filler="random_no_kv")),
        ("mqar zero", MQARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n, filler="zero")),
        ("mqar P=2 (JRT)", MQARConfig(input_seq_len=L, num_kv_pairs=L // 8, num_passes=2, num_examples=n)),
        ("ar", ARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n)),
        ("ar random_no_kv", ARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n, filler="random_no_kv")),
        (
            "mqar_overwrite M=N/2",
            OverwriteMQARConfig(input_seq_len=L, num_kv_pairs=L // 8, num_overwrites=L // 16, num_examples=n),
        ),
        (
            "mqar_overwrite no_kv",
            OverwriteMQARConfig(
                input_seq_len=L, num_kv_pairs=L // 8, num_overwrites=L // 16, num_examples=n, filler="random_no_kv"
            ),
        ),
    ]


def time_builds(configs: list[Any], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds to build all `configs`, once per repeat, with fresh seeds."""
    wall, cpu = [], []
    for rep in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i, config in enumerate(configs):
            config.build(seed=1000 * rep + i)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench data", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="timed builds per row; the median is reported")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the example counts (e.g. 0.1 for a quick run)"
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    MQARConfig(input_seq_len=64, num_kv_pairs=4, num_examples=100).build(seed=0)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; V=8192; median of {args.repeats} builds per row"
    )
    header = (
        f"{'generator':<22} {'L':>5} {'N':>4} {'examples':>9} {'median s':>9} {'cpu s':>7} "
        f"{'examples/s':>11} {'Mtok/s':>7}"
    )
    print(header)
    print("-" * len(header))
    for L, count in EXAMPLES.items():
        n = max(1, int(count * args.scale))
        for label, config in generators(L, n):
            wall, cpu = time_builds([config], args.repeats)
            median = statistics.median(wall)
            print(
                f"{label:<22} {L:>5} {config.num_kv_pairs:>4} {n:>9,} {median:>9.3f} {statistics.median(cpu):>7.3f} "
                f"{n / median:>11,.0f} {n * L / median / 1e6:>7.1f}"
            )

    n = max(1, int(MAD_TRAIN_EXAMPLES * args.scale))
    print(f"\nMAD tasks at their baseline, {n:,} training sequences each (memorization's 256 scaled up to time it)")
    print(f"{'task':<22} {'V':>5} {'L':>5} {'median s':>9} {'cpu s':>7} {'examples/s':>11} {'Mtok/s':>7}")
    for task in MAD_TASKS:
        config = mad_setting(task, train_examples=n).train
        wall, cpu = time_builds([config], args.repeats)
        median = statistics.median(wall)
        L = config.input_seq_len
        print(
            f"{task:<22} {config.vocab_size:>5} {L:>5} {median:>9.3f} {statistics.median(cpu):>7.3f} "
            f"{n / median:>11,.0f} {n * L / median / 1e6:>7.1f}"
        )

    segments = based_figure2_train()
    times, cpu = time_builds(segments, args.repeats)
    total = sum(s.num_examples for s in segments)
    median = statistics.median(times)
    print(f"\nBased Figure 2 training set: {total:,} examples (MQAR, V=8192, random filler)")
    print(
        f"  median {median:.3f} s   best {min(times):.3f} s   cpu {statistics.median(cpu):.3f} s"
        f"   ->  {total / median:,.0f} examples/s"
    )
    return 0
