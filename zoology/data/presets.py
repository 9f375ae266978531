"""Named data setups, defined once so sweeps and benchmarks share them instead of copying grids.

Sweeps use the functions (`TrainConfig.set({"data.train": based_figure2_train(), "data.test":
based_figure2_test()})`); `python -m zoology.data show NAME` and the benchmarks use `PRESETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoology.data.ar import ARConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig

BASED_FIGURE2_TRAIN: tuple[tuple[int, int, int], ...] = (
    (64, 4, 100_000),
    (128, 8, 20_000),
    (256, 16, 20_000),
    (256, 32, 20_000),
    (256, 64, 20_000),
)
"""(input_seq_len, num_kv_pairs, num_examples) of the Based Figure 2 training set."""

BASED_FIGURE2_TEST: tuple[tuple[int, int], ...] = (
    (64, 4),
    (64, 8),
    (64, 16),
    (128, 32),
    (256, 64),
    (512, 128),
    (1024, 256),
)
"""(input_seq_len, num_kv_pairs) of the Based Figure 2 test set: up to 4× longer and 4× more pairs
than anything in training (trained up to L = 256, N = 64)."""


def mqar_grid(grid: tuple[tuple[int, ...], ...], num_examples: int | None = None, **fields: Any) -> list[MQARConfig]:
    """MQAR segments from (L, N) or (L, N, examples) tuples; `fields` apply to every segment."""
    segments = []
    for row in grid:
        L, N, *rest = row
        n = num_examples if num_examples is not None else (rest[0] if rest else None)
        if n is None:
            raise ValueError(f"grid row {row} has no num_examples and none was given")
        segments.append(MQARConfig(input_seq_len=L, num_kv_pairs=N, num_examples=n, **fields))
    return segments


def based_figure2_train(**fields: Any) -> list[MQARConfig]:
    """The Based Figure 2 training set (180,000 examples, V = 8192, random filler unless overridden)."""
    return mqar_grid(BASED_FIGURE2_TRAIN, **fields)


def based_figure2_test(num_examples: int = 1000, max_seq_len: int | None = None, **fields: Any) -> list[MQARConfig]:
    """The Based Figure 2 extrapolation test set, 1,000 examples per (L, N) slice by default.

    `max_seq_len` drops the longer slices (e.g. 256 for a quick check on a CPU).
    """
    grid = tuple(row for row in BASED_FIGURE2_TEST if max_seq_len is None or row[0] <= max_seq_len)
    if not grid:
        raise ValueError(f"max_seq_len={max_seq_len} leaves no test slice (shortest is {BASED_FIGURE2_TEST[0][0]})")
    return mqar_grid(grid, num_examples=num_examples, **fields)


def tasks_demo() -> list[Any]:
    """One small example of each task, as printed in the README."""
    small = {"vocab_size": 64, "num_examples": 1000}
    return [
        MQARConfig(input_seq_len=32, num_kv_pairs=4, **small),
        MQARConfig(input_seq_len=32, num_kv_pairs=4, num_passes=2, **small),
        MQARConfig(input_seq_len=32, num_kv_pairs=4, filler="random_no_kv", **small),
        ARConfig(input_seq_len=16, num_kv_pairs=4, **small),
        OverwriteMQARConfig(input_seq_len=32, num_kv_pairs=4, num_overwrites=2, **small),
    ]


PRESETS: dict[str, Callable[[], list[Any]]] = {
    "based-fig2-train": based_figure2_train,
    "based-fig2-test": based_figure2_test,
    "tasks-demo": tasks_demo,
}
"""Segment lists by name, for `python -m zoology.data show NAME`."""
