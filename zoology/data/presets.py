"""Named data setups, defined once so sweeps and benchmarks share them instead of copying grids.

Sweeps use the functions (`TrainConfig.set({"data.train": based_figure2_train(), "data.test":
based_figure2_test()})`); `python -m zoology.data show NAME` and the benchmarks use `PRESETS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from zoology.data.ar import ARConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig

PRESETS_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


@functools.cache
def based_figure2_grid() -> tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, int], ...]]:
    """(train, test) of the Based Figure 2 setup, read from its one definition,
    configs/based_figure2.yaml: train rows are (input_seq_len, num_kv_pairs, num_examples), test rows
    (input_seq_len, num_kv_pairs), up to 4× longer and 4× more pairs than anything in training."""
    data = yaml.safe_load((PRESETS_DIR / "based_figure2.yaml").read_text())["data"]
    train = tuple((s["input_seq_len"], s["num_kv_pairs"], s["num_examples"]) for s in data["train"])
    test = tuple((s["input_seq_len"], s["num_kv_pairs"]) for s in data["test"])
    return train, test


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
    return mqar_grid(based_figure2_grid()[0], **fields)


def based_figure2_test(num_examples: int = 1000, max_seq_len: int | None = None, **fields: Any) -> list[MQARConfig]:
    """The Based Figure 2 extrapolation test set, 1,000 examples per (L, N) slice by default.

    `max_seq_len` drops the longer slices (e.g. 256 for a quick check on a CPU).
    """
    test = based_figure2_grid()[1]
    grid = tuple(row for row in test if max_seq_len is None or row[0] <= max_seq_len)
    if not grid:
        raise ValueError(f"max_seq_len={max_seq_len} leaves no test slice (shortest is {test[0][0]})")
    return mqar_grid(grid, num_examples=num_examples, **fields)


ZOOLOGY_FIGURE2: tuple[tuple[int, int], ...] = ((64, 4), (128, 8), (256, 16), (512, 64))
"""(input_seq_len, num_kv_pairs) of the Zoology Figure 2 panels, one length per run."""

REBASED_FIGURE1_LENGTHS: tuple[int, ...] = (128, 256, 512, 1024, 2048)
"""input_seq_len of the ReBased Figure 1 panels, one length per run (pairs: `rebased_figure1_kv_pairs`)."""


def rebased_figure1_kv_pairs(input_seq_len: int) -> int:
    """N = 16 at L = 128, otherwise L / 4 (the ReBased Figure 1 rule)."""
    return 16 if input_seq_len == 128 else input_seq_len // 4


def single_length(
    input_seq_len: int,
    num_kv_pairs: int,
    num_train: int = 100_000,
    num_test: int = 3_000,
    filler: str = "zero",
    **fields: Any,
) -> tuple[list[MQARConfig], list[MQARConfig]]:
    """(train, test) of the Zoology Figure 2 and ReBased Figure 1 setups: one (L, N) per run,
    100,000 training and 3,000 test examples, zero filler unless overridden."""
    grid = ((input_seq_len, num_kv_pairs),)
    return (
        mqar_grid(grid, num_examples=num_train, filler=filler, **fields),
        mqar_grid(grid, num_examples=num_test, filler=filler, **fields),
    )


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
