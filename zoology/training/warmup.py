"""Warming the compile caches for a config: `warm_compile(config)`, or `python -m zoology.training.warmup
CONFIG.json` in a process of its own.

A run with compile on compiles its loss (forward and backward) once per training batch shape, and
TorchInductor, AOTAutograd and Triton keep what they compile on disk (TORCHINDUCTOR_CACHE_DIR,
TRITON_CACHE_DIR), keyed by the graph. The warm-up builds the run's model, optimiser and step as
training does (zoology.training.build) over a few examples of each training segment (the first
batch_size: batches keep their real shape, (batch_size, L) inputs and the segment's (batch_size, K)
positions and targets) and takes one step per batch shape, so that a run trained later, in any
process sharing those directories, finds every graph it compiles in the caches. Nothing is kept:
no run directory, no weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import torch

from zoology.config import TrainConfig
from zoology.data import IGNORE_INDEX, DeviceSegment, Segment, load_segment, segment_seed
from zoology.training.build import build_training, compiles, planned_steps
from zoology.training.capture import run_stream
from zoology.utils import pick_device


def first_rows(segment: Segment, n: int, device: torch.device) -> DeviceSegment:
    """The first `n` examples of `segment` on `device`, with the positions and targets of the whole
    segment (K: the most labels any of its examples has)."""
    positions, targets = segment.label_positions()
    rows = (segment.inputs[:n], positions[:n], targets[:n])
    return DeviceSegment(segment.name, dict(segment.slice), *(t.to(device) for t in rows))


def batch_shape_segments(config: TrainConfig, device: torch.device) -> list[DeviceSegment]:
    """One small segment per distinct training batch shape of `config`: at most data.batch_size
    examples of the first training segment of each ((L), (K)) shape.

    Each is built with num_examples = batch_size (fewer if the segment has fewer), never cached.
    Where its examples do not all have the same number of labels, K could be below the whole
    segment's: then the whole segment is loaded (through the data cache, which training reads
    next) and its first rows taken with its K."""
    data = config.data
    segments: dict[tuple, DeviceSegment] = {}
    for i, seg in enumerate(data.train):
        seed = segment_seed(data.seed, "train", i)
        n = min(seg.num_examples, data.batch_size)
        small = seg.model_copy(update={"num_examples": n}).build(seed)
        labels_per_example = (small.labels != IGNORE_INDEX).sum(dim=1)
        if n < seg.num_examples and bool((labels_per_example != labels_per_example[0]).any()):
            small = load_segment(seg, seed, data.cache_dir)
        warm = first_rows(small, n, device)
        segments.setdefault((warm.inputs.shape[1], warm.positions.shape[1]), warm)
    return list(segments.values())


def warm_compile(config: TrainConfig) -> dict:
    """Compile `config`'s training step once per training batch shape, as its training would, if its
    compile resolves to on (see zoology.training.build.compiles); the weights are thrown away.
    Returns {"shapes": batch shapes stepped (0 when compile is off), "seconds": wall time}."""
    started = time.perf_counter()
    device = pick_device(config.device)
    if not compiles(config, device, planned_steps(config)):
        return {"shapes": 0, "seconds": time.perf_counter() - started}
    with run_stream(device):
        segments = batch_shape_segments(config, device)
        training = build_training(config, device, segments, total_steps=planned_steps(config))
        training.model.train()
        training.step.run_epoch(training.batches, 0, 0)
        float(training.step.loss_sum)  # waits for the steps to finish
        training.step.release()
    return {"shapes": len(segments), "seconds": time.perf_counter() - started}


def exit_with_parent(parent: int) -> None:
    """End this process (in a daemon thread's check, once a second) when process `parent` is no longer
    its parent: a launcher that is killed leaves no warm-up behind."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoology.training.warmup", description="Warm the compile caches for one training config."
    )
    parser.add_argument("config", help="a TrainConfig as JSON (a run directory's config.json)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    parser.add_argument("--parent", type=int, metavar="PID", help="exit when this process is no longer the parent")
    args = parser.parse_args(argv)
    if args.parent is not None:
        exit_with_parent(args.parent)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    config = TrainConfig.model_validate(json.loads(Path(args.config).read_text()))
    print(json.dumps(warm_compile(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
