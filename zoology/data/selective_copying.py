"""Selective copying (MAD task 4): copy the data tokens scattered among blanks, in order, after a cue.

    _ d1 _ _ d2 … _ dn _ |  C  | _ _ … _       L − n − 1 tokens | copy token | n blanks
    labels: the last n positions, d1 … dn in order (no shift: the first blank after C predicts d1)

Token V − 1 is the copy cue, V − 2 the blank, data tokens are uniform with replacement over
[0, V − 2). The n data positions are a uniformly random n-subset of the L − n − 1 prefix positions
(the whole prefix, seeded), kept in order; every other prefix position is blank.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import distinct_randint, in_slices
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import TaskConfig


class SelectiveCopyingConfig(TaskConfig):
    """One selective-copying segment: `num_examples` sequences of `input_seq_len` tokens."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len", "num_tokens_to_copy")
    legend: ClassVar[str] = (
        "d3 data token · _ blank · C copy cue · _→3 a blank after the cue: label the next data token"
    )

    task: Literal["selective_copying"] = "selective_copying"
    vocab_size: int = Field(16, ge=4)
    input_seq_len: int = Field(256, ge=3)
    num_tokens_to_copy: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _check_length(self) -> SelectiveCopyingConfig:
        L, n = self.input_seq_len, self.num_tokens_to_copy
        if 2 * n + 1 > L:
            raise ValueError(
                f"num_tokens_to_copy={n} too large for input_seq_len={L}: need 2·n + 1 = {2 * n + 1} <= input_seq_len"
            )
        return self

    def mark(self, token: int) -> str:
        return {self.vocab_size - 1: "C", self.vocab_size - 2: "_"}.get(token, f"d{token}")

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, k, V = self.num_examples, self.input_seq_len, self.num_tokens_to_copy, self.vocab_size
        data = torch.randint(0, V - 2, (n, k), generator=gen)
        places = distinct_randint(n, k, 0, L - k - 1, gen)
        inputs, labels = in_slices((data, places), self._build, L)
        return Segment(inputs, labels, self.slice_fields())

    def _build(self, data: torch.Tensor, places: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of examples with these data tokens (n, k) at these prefix positions (n, k)."""
        n, L, k, V = len(data), self.input_seq_len, self.num_tokens_to_copy, self.vocab_size
        inputs = torch.full((n, L), V - 2, dtype=torch.long)
        inputs.scatter_(1, places.sort(dim=1).values, data)
        inputs[:, L - k - 1] = V - 1
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels[:, L - k :] = data
        return inputs, labels
