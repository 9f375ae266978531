"""Compression (MAD task 5): encode a random sequence into one vector and decode it back.

    x1 x2 … xL−1 Z          L − 1 uniform data tokens of [0, V − 1), then the compression token V − 1
    labels: every position, its own input token (the whole input is the target)

The task is only meaningful through a bottleneck: a per-position read-out would copy its own input.
A model for it sets `readout: bottleneck` (checked by TrainConfig): the layer stack runs causally,
only the hidden state at the last position (Z, which has seen every token) is kept, and every output
position is decoded from it plus a sinusoidal embedding of the position (zoology/model.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from zoology.data.segment import Segment
from zoology.data.task import TaskConfig


class CompressionConfig(TaskConfig):
    """One compression segment: `num_examples` sequences of `input_seq_len` tokens, each its own target."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len")
    legend: ClassVar[str] = "d3 data token · Z compression token · d3→3 decode the token of this position"
    model_requirements: ClassVar[dict[str, Any]] = {"readout": "bottleneck"}

    task: Literal["compression"] = "compression"
    vocab_size: int = Field(16, ge=4)
    input_seq_len: int = Field(32, ge=2)

    def mark(self, token: int) -> str:
        return "Z" if token == self.vocab_size - 1 else f"d{token}"

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, V = self.num_examples, self.input_seq_len, self.vocab_size
        inputs = torch.randint(0, V - 1, (n, L), generator=gen)
        inputs[:, -1] = V - 1
        return Segment(inputs, inputs.clone(), self.slice_fields())
