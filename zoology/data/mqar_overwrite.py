"""Overwrite (forgetting) MQAR: some keys reappear with a new value; a query expects the latest.

    k1 v1 … kN vN        |  ko1 w1 … koM wM          |  query region: each kj once, at C + 2·gj
    positions 0 … 2N−1   |  2N … C−1,  C = 2·(N + M) |  C … L−1, label = latest value of kj

Keys are N distinct tokens of [1, V/2). The M overwritten keys ko1 … koM are a uniformly random
M-subset of them, in random order, each appearing exactly twice in the context. Values v1 … vN,
w1 … wM are N + M distinct tokens of [V/2, V): a new value never repeats the old one nor any other
pair's value. The label of kj is wi if kj = koi, else vj. Query slots are drawn as in MQAR: the j-th
key's slot gj is the j-th draw without replacement from slots 0 … (L−C)/2 − 1 with weight
∝ a·(s+1)^(a−1). Every other position holds filler (random_no_kv excludes all N + M values).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import distinct_randint, filler_tokens, power_law_slots
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import KeyValueRecallConfig


class OverwriteMQARConfig(KeyValueRecallConfig):
    """One overwrite-MQAR segment: N pairs, then M of the keys again with new values, then N queries."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("input_seq_len", "num_kv_pairs", "num_overwrites")
    even_length: ClassVar[bool] = True

    task: Literal["mqar_overwrite"] = "mqar_overwrite"
    num_overwrites: int = Field(ge=1, description="M: how many of the N keys reappear with a new value")
    power_a: float = Field(0.01, gt=0)

    @model_validator(mode="after")
    def _check_constraints(self) -> OverwriteMQARConfig:
        """M <= N, 2·(N + M) + 2·N <= L; with L even and V > L (checked first) these imply N + M <= V/2
        (distinct values)."""
        L, N, M = self.input_seq_len, self.num_kv_pairs, self.num_overwrites
        if M > N:
            raise ValueError(f"num_overwrites={M} must be at most num_kv_pairs={N} (each key is overwritten once)")
        if 2 * (N + M) + 2 * N > L:
            raise ValueError(
                f"num_kv_pairs={N} with num_overwrites={M} too large for input_seq_len={L}: "
                f"need 2·(N + M) + 2·N = {2 * (N + M) + 2 * N} <= input_seq_len"
            )
        return self

    @property
    def context_len(self) -> int:
        """Tokens of key–value context (first pairs and overwrites) before the query region."""
        return 2 * (self.num_kv_pairs + self.num_overwrites)

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, N, M, V = self.num_examples, self.input_seq_len, self.num_kv_pairs, self.num_overwrites, self.vocab_size
        keys = distinct_randint(n, N, 1, V // 2, gen)
        all_values = distinct_randint(n, N + M, V // 2, V, gen)
        first, new = all_values[:, :N], all_values[:, N:]
        overwritten = distinct_randint(n, M, 0, N, gen)
        latest = first.scatter(1, overwritten, new)
        C = self.context_len
        context = torch.cat(
            [
                torch.stack([keys, first], dim=2).reshape(n, 2 * N),
                torch.stack([keys.gather(1, overwritten), new], dim=2).reshape(n, 2 * M),
            ],
            dim=1,
        )
        query_pos = C + 2 * power_law_slots(n, N, (L - C) // 2, self.power_a, gen)

        inputs = filler_tokens(self.filler, (n, L), V, torch.cat([keys, all_values], 1), gen)
        inputs[:, :C] = context
        inputs.scatter_(1, query_pos, keys)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels.scatter_(1, query_pos, latest)
        return Segment(inputs=inputs, labels=labels, slice=self.slice_fields())
