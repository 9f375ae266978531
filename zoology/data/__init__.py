"""Task generators, segments, seeds, the disk cache and device-resident batching."""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoology.data.segment import IGNORE_INDEX, Segment, slice_name
from zoology.utils import atomic_write_bytes, content_hash, derive_seed, remove_temps

__all__ = [
    "IGNORE_INDEX",
    "Segment",
    "slice_name",
    "segment_seed",
    "cache_path",
    "load_segment",
    "DeviceSegment",
    "Batches",
]


def segment_seed(data_seed: int, split: str, index: int) -> int:
    """Seed of segment `index` of `split` ('train' or 'test'); splits draw from disjoint streams."""
    return derive_seed("segment", data_seed, split, index)


CACHE_FORMAT = 1
CACHE_TEMP_STALE_S = 600.0
"""A cache file's temporary file (`.<name>.<random>.tmp`) this old was left by a writer that was killed:
a write takes seconds (the bytes are ready before the file is opened)."""
_tidied: set[Path] = set()


def tidy_cache(cache_dir: str | Path) -> list[Path]:
    """Remove the stale temporary files of `cache_dir` (older than CACHE_TEMP_STALE_S), once per
    process and directory; the paths removed."""
    key = Path(cache_dir).resolve()
    if key in _tidied:
        return []
    _tidied.add(key)
    return remove_temps(key, older_than_s=CACHE_TEMP_STALE_S)


def cache_path(config: Any, seed: int, cache_dir: str | Path) -> Path:
    """Where `load_segment` keeps this segment: named by its slice, keyed by a hash of the full
    config, the seed, the generator's version and the file format."""
    key = content_hash([config.model_dump(mode="json"), seed, type(config).generator_version, CACHE_FORMAT], length=20)
    return Path(cache_dir) / f"{slice_name(config.slice_fields())}-{key}.pt"


def load_segment(config: Any, seed: int, cache_dir: str | Path | None = None) -> Segment:
    """Build a segment, or read it from `cache_dir` (keyed by config, seed and generator version).

    The file is written to a temporary name in the same directory and renamed into place, so
    concurrent writers of the same segment each leave a complete file (the last rename wins; all
    are identical) and readers never see a partial one; the temporary files of writers that were
    killed are removed once stale (`tidy_cache`). A file that does not load, or does not
    have the config's shape, is rebuilt. Tokens are stored as int16 (int32 for vocabularies above
    32,767) and returned as int64; the slice comes from the config, not the file. A task that is not
    `cacheable` (text, read from files) is always built.
    """
    if cache_dir is None or not config.cacheable:
        return config.build(seed)
    tidy_cache(cache_dir)
    path = cache_path(config, seed, cache_dir)
    shape = (config.num_examples, config.input_seq_len)
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob["inputs"].shape == blob["labels"].shape == shape:
                return Segment(blob["inputs"].long(), blob["labels"].long(), config.slice_fields())
        except Exception as error:
            warnings.warn(f"cache file {path} does not load ({error}); rebuilding it", stacklevel=2)
    segment = config.build(seed)
    dtype = torch.int16 if config.vocab_size <= torch.iinfo(torch.int16).max else torch.int32
    buffer = io.BytesIO()
    torch.save({"inputs": segment.inputs.to(dtype), "labels": segment.labels.to(dtype)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return segment


@dataclass
class DeviceSegment:
    """A segment on the training device, with its labelled positions gathered once."""

    name: str
    slice: dict
    inputs: torch.Tensor  # (n, L)
    positions: torch.Tensor  # (n, K) positions of labelled tokens
    targets: torch.Tensor  # (n, K) their labels, IGNORE_INDEX where padded

    @classmethod
    def from_segment(cls, segment: Segment, device: torch.device) -> DeviceSegment:
        positions, targets = segment.label_positions()
        return cls(
            name=segment.name,
            slice=dict(segment.slice),
            inputs=segment.inputs.to(device),
            positions=positions.to(device),
            targets=targets.to(device),
        )

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Batches:
    """Batches drawn one segment at a time; example order and batch order reshuffled each epoch.

    With shuffle=False the order is fixed: segments in order, examples in order.
    """

    def __init__(self, segments: list[DeviceSegment], batch_size: int, shuffle: bool, seed: int):
        self.segments, self.batch_size, self.shuffle, self.seed = segments, batch_size, shuffle, seed

    def __len__(self) -> int:
        return sum(-(-len(s) // self.batch_size) for s in self.segments)

    def order(self, epoch: int) -> tuple[list[tuple[int, int]], list[torch.Tensor | None]]:
        """The epoch's batches as (segment index, first row) in the order they are drawn, and each
        segment's example order on the CPU (None: in order)."""
        gen = torch.Generator().manual_seed(derive_seed("batches", self.seed, epoch))
        plan = []
        orders = []
        for i, seg in enumerate(self.segments):
            n = len(seg)
            orders.append(torch.randperm(n, generator=gen) if self.shuffle else None)
            plan += [(i, start) for start in range(0, n, self.batch_size)]
        if self.shuffle:
            random.Random(derive_seed("batch-order", self.seed, epoch)).shuffle(plan)
        return plan, orders

    def epoch(self, epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yields (segment index, inputs (B, L), positions (B, K), targets (B, K))."""
        plan, orders = self.order(epoch)
        device_orders = [
            None if order is None else order.to(seg.inputs.device, non_blocking=True)
            for seg, order in zip(self.segments, orders)
        ]
        for i, start in plan:
            seg, order = self.segments[i], device_orders[i]
            stop = min(start + self.batch_size, len(seg))
            if order is None:
                yield i, seg.inputs[start:stop], seg.positions[start:stop], seg.targets[start:stop]
            else:
                idx = order[start:stop]
                yield i, seg.inputs[idx], seg.positions[idx], seg.targets[idx]

    def index_table(self, epoch: int) -> tuple[list[int], torch.Tensor]:
        """The same batches as `epoch` as the segment index of each and a CPU table (batches,
        batch_size) of their example indices, a short batch's row filled up with -1."""
        plan, orders = self.order(epoch)
        rows, first_row = [], []
        for seg, order in zip(self.segments, orders):
            n = len(seg)
            order = torch.arange(n) if order is None else order
            first_row.append(sum(len(r) for r in rows))
            rows.append(torch.cat([order, order.new_full(((-n) % self.batch_size,), -1)]).view(-1, self.batch_size))
        picked = torch.tensor([first_row[i] + start // self.batch_size for i, start in plan], dtype=torch.long)
        return [i for i, _ in plan], torch.cat(rows)[picked]
