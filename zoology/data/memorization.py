"""Memorization (MAD task 6): a fixed key → value map learnt in the weights; no context helps.

    k1 I k2 I … kL/2 I       L/2 keys, each followed by the insert token I = V − 1
    labels: at each I, the mapped value of the key before it (keys ignored; no shift)

The map is fixed by `map_seed` alone, so train and test segments (different segment seeds, the same
map_seed) share it: keys are the first half of the V − 1 non-insert tokens, [0, K) with
K = (V − 1) // 2, values the rest, [K, V − 1), shuffled by a generator seeded with map_seed and
zipped with the keys in order (key k maps to the k-th shuffled value; a value left over when V − 1
is odd is never used). Each example's keys are uniform with replacement over [0, K), drawn from the
segment's own seed. A test key never seen in training cannot be answered: with 4,096 training
queries over K keys a fraction (1 − 1/K)^4096 of them is unseen (K = 4,095 at V = 8,192: 37 %).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import TaskConfig


class MemorizationConfig(TaskConfig):
    """One memorization segment: `num_examples` sequences of `input_seq_len` (even) tokens."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len")
    legend: ClassVar[str] = "k5 key · I insert token · I→140 label the value the map gives the key before"

    task: Literal["memorization"] = "memorization"
    vocab_size: int = Field(256, ge=4)
    input_seq_len: int = Field(32, ge=2)
    map_seed: int = Field(0, ge=0, description="seeds the key → value map, shared by every segment that sets it")

    @model_validator(mode="after")
    def _check_length(self) -> MemorizationConfig:
        if self.input_seq_len % 2:
            raise ValueError(f"input_seq_len={self.input_seq_len} must be even (pairs of key and insert token)")
        return self

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - 1) // 2

    def value_map(self) -> torch.Tensor:
        """(num_keys,) the value of each key, a function of map_seed and vocab_size only."""
        K = self.num_keys
        shuffled = torch.randperm(self.vocab_size - 1 - K, generator=torch.Generator().manual_seed(self.map_seed))
        return K + shuffled[:K]

    def mark(self, token: int) -> str:
        return "I" if token == self.vocab_size - 1 else f"k{token}"

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, V = self.num_examples, self.input_seq_len, self.vocab_size
        keys = torch.randint(0, self.num_keys, (n, L // 2), generator=gen)
        inputs = torch.stack([keys, torch.full_like(keys, V - 1)], dim=2).reshape(n, L)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels[:, 1::2] = self.value_map()[keys]
        return Segment(inputs, labels, self.slice_fields())
