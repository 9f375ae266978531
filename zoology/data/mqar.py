"""Multi-query associative recall (MQAR), exactly as defined in the task spec.

    k1 v1 k2 v2 … kN vN  (× num_passes)  |  query region: each kj once, at position C + 2·gj
    positions 0 … C−1,  C = 2·N·P        |  C … L−1, label vj at kj's query position

Keys are N distinct tokens of [1, V/2), values N distinct tokens of [V/2, V). Query slot gj of the
j-th key is the j-th draw without replacement from slots 0 … (L−C)/2 − 1, slot s having weight
∝ a·(s+1)^(a−1). With num_passes P > 1 the context is repeated verbatim ("just read twice").
Every other position holds filler.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import distinct_randint, filler_tokens, power_law_slots
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import KeyValueRecallConfig


class MQARConfig(KeyValueRecallConfig):
    """One MQAR segment: `num_examples` sequences of `input_seq_len` tokens."""

    generator_version: ClassVar[int] = 2
    slice_keys: ClassVar[tuple[str, ...]] = ("input_seq_len", "num_kv_pairs", "num_passes")
    even_length: ClassVar[bool] = True

    task: Literal["mqar"] = "mqar"
    power_a: float = Field(0.01, gt=0)
    num_passes: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check_constraints(self) -> MQARConfig:
        """2·N·P + 2·N <= L; with L even and V > L (checked first) this implies V/2 − 1 >= N (enough
        distinct keys)."""
        L, N, P = self.input_seq_len, self.num_kv_pairs, self.num_passes
        if 2 * N * P + 2 * N > L:
            raise ValueError(
                f"num_kv_pairs={N} too large for input_seq_len={L} with num_passes={P}: "
                f"need 2·N·P + 2·N = {2 * N * P + 2 * N} <= input_seq_len"
            )
        return self

    @property
    def context_len(self) -> int:
        """Tokens of key–value context before the query region."""
        return 2 * self.num_kv_pairs * self.num_passes

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, N, P, V = self.num_examples, self.input_seq_len, self.num_kv_pairs, self.num_passes, self.vocab_size
        half = V // 2
        keys = distinct_randint(n, N, 1, half, gen)
        values = distinct_randint(n, N, half, V, gen)
        context = torch.stack([keys, values], dim=2).reshape(n, 2 * N).repeat(1, P)
        C = self.context_len
        query_pos = C + 2 * power_law_slots(n, N, (L - C) // 2, self.power_a, gen)

        inputs = filler_tokens(self.filler, (n, L), V, torch.cat([keys, values], 1), gen)
        inputs[:, :C] = context
        inputs.scatter_(1, query_pos, keys)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels.scatter_(1, query_pos, values)
        return Segment(inputs=inputs, labels=labels, slice=self.slice_fields())
