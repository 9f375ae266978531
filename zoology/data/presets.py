"""Named data setups, defined once so sweeps and benchmarks share them instead of copying grids.

Sweeps use the functions (`TrainConfig.set({"data.train": based_figure2_train(), "data.test":
based_figure2_test()})`); `python -m zoology.data show NAME` and the benchmarks use `PRESETS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zoology.data.ar import ARConfig
from zoology.data.compression import CompressionConfig
from zoology.data.fuzzy_recall import FuzzyRecallConfig
from zoology.data.in_context_recall import InContextRecallConfig
from zoology.data.memorization import MemorizationConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.data.noisy_recall import NoisyRecallConfig
from zoology.data.selective_copying import SelectiveCopyingConfig
from zoology.data.task import TaskConfig


def _presets_dir() -> Path:
    """zoology/configs/ in an installed wheel (setup.py maps the top-level configs/ there), else
    configs/ beside the package: a checkout, on PYTHONPATH or installed in editable mode."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


PRESETS_DIR = _presets_dir()
"""Where the YAML presets are: `TrainConfig.from_yaml("attention")` reads PRESETS_DIR / "attention.yaml"."""


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


MAD_TASK_CONFIGS: dict[str, type[TaskConfig]] = {
    "in_context_recall": InContextRecallConfig,
    "fuzzy_recall": FuzzyRecallConfig,
    "noisy_recall": NoisyRecallConfig,
    "selective_copying": SelectiveCopyingConfig,
    "compression": CompressionConfig,
    "memorization": MemorizationConfig,
}
"""The six MAD tasks, in the paper's order, and their configs (each one's defaults are its MAD baseline)."""
MAD_TASKS: tuple[str, ...] = tuple(MAD_TASK_CONFIGS)
MAD_RECALL_TASKS = ("in_context_recall", "fuzzy_recall", "noisy_recall")
"""Trained on next-token labels at every position, tested at the recalled positions only."""
MAD_TRAIN_EXAMPLES = 12_800
MAD_TEST_EXAMPLES = 1_280
MAD_VALID_EXAMPLES = 1_280
"""Our choice (MAD has no validation split): as many as the test split, drawn from its own seed."""
MAD_MEMORIZATION_TRAIN_EXAMPLES = 256
"""Memorization trains on 256 sequences (4,096 queries) at every vocabulary size."""
MAD_TRAIN_COUNTS = (6400, 3200, 1600, 800)
MAD_VARIATIONS: dict[str, dict[str, tuple]] = {
    "in_context_recall": {"vocab_size": (32, 64, 128), "input_seq_len": (256, 512, 1024), "train": MAD_TRAIN_COUNTS},
    "fuzzy_recall": {"vocab_size": (32, 64, 128), "input_seq_len": (256, 512, 1024), "train": MAD_TRAIN_COUNTS},
    "noisy_recall": {
        "vocab_size": (48, 80, 144),
        "input_seq_len": (256, 512, 1024),
        "train": MAD_TRAIN_COUNTS,
        "frac_noise": (0.4, 0.6, 0.8),
    },
    "selective_copying": {
        "vocab_size": (32, 64, 128),
        "input_seq_len": (512, 1024),
        "train": MAD_TRAIN_COUNTS,
        "num_tokens_to_copy": (32, 64, 96),
    },
    "compression": {"vocab_size": (32, 64, 128), "input_seq_len": (64, 128, 256), "train": MAD_TRAIN_COUNTS},
    "memorization": {"vocab_size": (512, 1024, 2048, 4096, 8192)},
}
"""The one-factor-at-a-time variations of each task's baseline ("train": training sequences)."""
MAD_TEST_FIELDS: dict[str, dict[str, Any]] = {"fuzzy_recall": {"key_lengths": (3, 3)}}
"""Where the test (and validation) segments differ from training besides their labels."""
_LABELS = {"vocab_size": "V", "input_seq_len": "L", "train": "train", "frac_noise": "noise", "num_tokens_to_copy": "n"}


@dataclass(frozen=True)
class MadSetting:
    """One setting of a MAD task: its name within the task ('base', 'V32', 'L256', 'train800',
    'noise0.4', 'n32') and its train, validation and test segments."""

    task: str
    label: str
    train: TaskConfig
    valid: TaskConfig
    test: TaskConfig


def mad_setting(
    task: str,
    label: str = "base",
    train_examples: int | None = None,
    test_examples: int = MAD_TEST_EXAMPLES,
    valid_examples: int = MAD_VALID_EXAMPLES,
    **fields: Any,
) -> MadSetting:
    """The baseline of `task` with `fields` changed. Recall tasks train on next-token labels; test
    and validation segments keep the task's labels (and MAD_TEST_FIELDS)."""
    if task not in MAD_TASKS:
        raise ValueError(f"task={task!r}: the MAD tasks are {', '.join(MAD_TASKS)}")
    if train_examples is None:
        train_examples = MAD_MEMORIZATION_TRAIN_EXAMPLES if task == "memorization" else MAD_TRAIN_EXAMPLES
    config = MAD_TASK_CONFIGS[task]
    base = {"task": task, **fields}
    train_labels = {"labels": "next_token"} if task in MAD_RECALL_TASKS else {}
    held_out = {**base, **MAD_TEST_FIELDS.get(task, {})}
    return MadSetting(
        task,
        label,
        config.model_validate({**base, **train_labels, "num_examples": train_examples}),
        config.model_validate({**held_out, "num_examples": valid_examples}),
        config.model_validate({**held_out, "num_examples": test_examples}),
    )


def mad_settings(
    tasks: tuple[str, ...] = MAD_TASKS, train_examples: int | None = None, **sizes: int
) -> list[MadSetting]:
    """Every setting of `tasks`: the baseline, then each variation of MAD_VARIATIONS (66 for all six).
    `train_examples` replaces the baseline's training sequences (the "train" variations keep their
    own counts); `sizes` sets test_examples / valid_examples."""
    settings = []
    for task in tasks:
        settings.append(mad_setting(task, train_examples=train_examples, **sizes))
        for field, values in MAD_VARIATIONS[task].items():
            for value in values:
                label = f"{_LABELS[field]}{value}"
                if field == "train":
                    settings.append(mad_setting(task, label, train_examples=value, **sizes))
                else:
                    settings.append(mad_setting(task, label, train_examples=train_examples, **sizes, **{field: value}))
    return settings


def mad_baselines() -> list[TaskConfig]:
    """The test segment of every MAD task's baseline."""
    return [mad_setting(task).test for task in MAD_TASKS]


def mad_demo() -> list[TaskConfig]:
    """One short example of each MAD task, as printed in the README (test segments: the task's labels)."""
    short = {
        "in_context_recall": {"input_seq_len": 32},
        "fuzzy_recall": {"input_seq_len": 32},
        "noisy_recall": {"input_seq_len": 32},
        "selective_copying": {"input_seq_len": 32, "num_tokens_to_copy": 4},
        "compression": {"input_seq_len": 16},
        "memorization": {},
    }
    return [mad_setting(task, test_examples=10, **fields).test for task, fields in short.items()]


PRESETS: dict[str, Callable[[], list[Any]]] = {
    "based-fig2-train": based_figure2_train,
    "based-fig2-test": based_figure2_test,
    "tasks-demo": tasks_demo,
    "mad-baselines": mad_baselines,
    "mad-baselines-train": lambda: [mad_setting(task).train for task in MAD_TASKS],
    "mad-demo": mad_demo,
}
"""Segment lists by name, for `python -m zoology.data show NAME`."""
