"""Single-query associative recall (AR), the classic H3 / Zoology form.

    k1 v1 k2 v2 … kN vN  |  filler  |  kq
    positions 0 … 2N−1   |  2N … L−2 |  L−1, label vq

Keys are N distinct tokens of [1, V/2), values N distinct tokens of [V/2, V) (the MQAR split). The
queried pair q is uniform over 1 … N; its key is the last token and its value the only label.
With L = 2N + 1 there is no filler.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import distinct_randint, filler_tokens
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import KeyValueRecallConfig


class ARConfig(KeyValueRecallConfig):
    """One AR segment: `num_examples` sequences of `input_seq_len` tokens, one query each."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("input_seq_len", "num_kv_pairs")

    task: Literal["ar"] = "ar"
    input_seq_len: int = Field(ge=3)

    @model_validator(mode="after")
    def _check_constraints(self) -> ARConfig:
        """2·N + 1 <= L; with V > L (checked first) this implies V/2 − 1 >= N (enough distinct keys)."""
        L, N = self.input_seq_len, self.num_kv_pairs
        if 2 * N + 1 > L:
            raise ValueError(
                f"num_kv_pairs={N} too large for input_seq_len={L}: need 2·N + 1 = {2 * N + 1} <= input_seq_len"
            )
        return self

    @property
    def context_len(self) -> int:
        """Tokens of key–value context before the filler and the query."""
        return 2 * self.num_kv_pairs

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, N, V = self.num_examples, self.input_seq_len, self.num_kv_pairs, self.vocab_size
        keys = distinct_randint(n, N, 1, V // 2, gen)
        values = distinct_randint(n, N, V // 2, V, gen)
        queried = torch.randint(0, N, (n, 1), generator=gen)

        inputs = filler_tokens(self.filler, (n, L), V, torch.cat([keys, values], 1), gen)
        inputs[:, : 2 * N] = torch.stack([keys, values], dim=2).reshape(n, 2 * N)
        inputs[:, L - 1] = keys.gather(1, queried).squeeze(1)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels[:, L - 1] = values.gather(1, queried).squeeze(1)
        return Segment(inputs=inputs, labels=labels, slice=self.slice_fields())
