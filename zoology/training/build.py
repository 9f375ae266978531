"""What a run trains with, built in one place: the model, its optimiser, the batches and the step
(`build_training`), and whether its loss is compiled (`compiles`). The training loop and the
compile warm-up (zoology.training.warmup) both build through here, so their compiled graphs, and
so the compile caches' keys, are the same."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoology.config import TrainConfig
from zoology.data import Batches, DeviceSegment
from zoology.model import LanguageModel
from zoology.training.capture import SEEDING
from zoology.training.schedule import LearningRate, learning_rates
from zoology.training.step import TrainStep, adamw

COMPILE_MIN_STEPS = 5000
"""compile="auto" compiles runs of at least this many steps: compiling costs about 55 s with a cold
cache and 7 s with a warm one and saves 1–2 ms per step on an H100 (zoology.bench train)."""


def compiles(config: TrainConfig, device: torch.device, total_steps: int) -> bool:
    """Whether a run of `total_steps` optimiser steps on `device` compiles its loss: compile=True,
    or "auto" on CUDA for runs of at least COMPILE_MIN_STEPS steps."""
    return config.compile is True or (
        config.compile == "auto" and device.type == "cuda" and total_steps >= COMPILE_MIN_STEPS
    )


def planned_steps(config: TrainConfig) -> int:
    """The optimiser steps of the whole run, from the config alone: max_epochs × the batches of an
    epoch (each training segment's examples in batches of data.batch_size, the last one short)."""
    batch = config.data.batch_size
    return config.max_epochs * sum(-(-seg.num_examples // batch) for seg in config.data.train)


@dataclass
class Training:
    """A run's model (on its device), optimiser, learning rate of each step, batches and step."""

    model: LanguageModel
    optimizer: torch.optim.Optimizer
    lr_at: LearningRate
    batches: Batches
    step: TrainStep
    precision: str
    use_graphs: bool
    use_compile: bool


def build_training(
    config: TrainConfig, device: torch.device, train_segments: list[DeviceSegment], total_steps: int | None = None
) -> Training:
    """The model (seeded with config.seed), AdamW, the schedule and the step over `train_segments`;
    the schedule and the compile rule count `total_steps` steps (None: max_epochs epochs of these
    segments' batches)."""
    batches = Batches(train_segments, config.data.batch_size, config.data.shuffle, config.seed)
    with SEEDING:
        torch.manual_seed(config.seed)
        model = LanguageModel(config.model, max_seq_len=config.data.max_seq_len)
    model = model.to(device)
    precision = config.resolved_precision(device)
    use_graphs = device.type == "cuda" and config.cuda_graphs
    optimizer = adamw(model, config.lr, config.weight_decay, config.betas, device, resident=use_graphs)
    if total_steps is None:
        total_steps = config.max_epochs * len(batches)
    lr_at = learning_rates(
        config.lr, total_steps, config.warmup_steps, config.lr_decay, config.min_lr, config.warmup_start_lr
    )
    use_compile = compiles(config, device, total_steps)
    step = TrainStep(
        model,
        optimizer,
        lr_at,
        precision,
        config.grad_clip,
        use_graphs,
        use_compile,
        config.data.batch_size,
        **({"segments": train_segments, "total_steps": total_steps} if use_graphs else {}),
        grad_accum_steps=config.grad_accum_steps,
    )
    return Training(model, optimizer, lr_at, batches, step, precision, use_graphs, use_compile)
