"""Multi-query associative recall (MQAR), exactly as defined in the task spec.

Context k1 v1 … kN vN (repeated `num_passes` times), then each key once more at an even offset of
the query region, slot i drawn with probability ∝ a·i^(a−1); the label at a query is its value.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from zoology.data.sampling import (
    distinct_randint,
    random_tokens_excluding,
    weighted_sample_without_replacement,
)
from zoology.data.segment import IGNORE_INDEX, Segment

Filler = Literal["random", "random_no_kv", "zero"]
FILLER_HELP = (
    "random: uniform over the whole vocabulary (the reference behaviour; may collide with the "
    "example's keys); random_no_kv: uniform over tokens that are not this example's keys or "
    "values; zero: token 0"
)


class MQARConfig(BaseModel):
    """One MQAR segment: `num_examples` sequences of `input_seq_len` tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    generator_version: ClassVar[int] = 1

    task: Literal["mqar"] = "mqar"
    vocab_size: int = Field(8192, ge=4)
    input_seq_len: int = Field(ge=2)
    num_kv_pairs: int = Field(ge=1)
    num_examples: int = Field(ge=1)
    power_a: float = Field(0.01, gt=0)
    num_passes: int = Field(1, ge=1)
    filler: Filler = Field("random", description=FILLER_HELP)

    @model_validator(mode="after")
    def _check_constraints(self) -> MQARConfig:
        """L even, V > L, 2·N·P + 2·N <= L; these imply V/2 − 1 >= N (enough distinct keys)."""
        L, N, P, V = self.input_seq_len, self.num_kv_pairs, self.num_passes, self.vocab_size
        if L % 2:
            raise ValueError(f"input_seq_len={L} must be even")
        if V <= L:
            raise ValueError(f"vocab_size={V} must be greater than input_seq_len={L}")
        if 2 * N * P + 2 * N > L:
            raise ValueError(
                f"num_kv_pairs={N} too large for input_seq_len={L} with num_passes={P}: "
                f"need 2·N·P + 2·N = {2 * N * P + 2 * N} <= input_seq_len"
            )
        return self

    def slice_fields(self) -> dict:
        return {
            "task": self.task,
            "input_seq_len": self.input_seq_len,
            "num_kv_pairs": self.num_kv_pairs,
            "num_passes": self.num_passes,
        }

    def build(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, N, P, V = (
            self.num_examples,
            self.input_seq_len,
            self.num_kv_pairs,
            self.num_passes,
            self.vocab_size,
        )
        half = V // 2
        keys = distinct_randint(n, N, 1, half, gen)
        values = distinct_randint(n, N, half, V, gen)
        context = torch.stack([keys, values], dim=2).reshape(n, 2 * N).repeat(1, P)
        C = context.shape[1]

        space = (L - C) // 2
        slot = torch.arange(1, space + 1, dtype=torch.float64)
        log_p = torch.log(torch.tensor(self.power_a, dtype=torch.float64)) + (self.power_a - 1) * slot.log()
        slots = weighted_sample_without_replacement(n, N, log_p, gen)
        query_pos = C + 2 * slots

        if self.filler == "random":
            inputs = torch.randint(0, V, (n, L), generator=gen)
        elif self.filler == "random_no_kv":
            inputs = random_tokens_excluding((n, L), V, torch.cat([keys, values], 1), gen)
        else:
            inputs = torch.zeros(n, L, dtype=torch.long)
        inputs[:, :C] = context
        inputs.scatter_(1, query_pos, keys)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels.scatter_(1, query_pos, values)
        return Segment(inputs=inputs, labels=labels, slice=self.slice_fields())
