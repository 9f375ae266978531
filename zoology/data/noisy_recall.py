"""Noisy in-context recall (MAD task 3): in-context recall with noise pairs among the key–value pairs.

    k1 v1 n n k2 v2 … n n | kq vq      S = L/2 slots of two tokens; the last is the probe pair
    label at each key seen at an earlier (non-noise) slot: its value; kq always; noise never

The last `noise_vocab_size` token ids are noise; keys are the first half of the rest, [0, K/2), and
values the second, [K/2, K), K = V − noise_vocab_size. Each of the first L/2 − 1 slots is a noise
pair (two tokens uniform with replacement over the noise ids) with probability `frac_noise`, else a
key (uniform with replacement) and its value (drawn once per example and kept). An example whose
slots all came out noise gets one uniformly chosen slot back as a pair (the definition wants at
least one). The probe repeats the key of a uniformly chosen earlier pair. As in in-context recall
the model reads all L tokens and the last is only a target; training segments set `labels:
next_token`, which trains on every position, noise included.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.in_context_recall import recall_pairs
from zoology.data.segment import Segment
from zoology.data.task import TaskConfig


class NoisyRecallConfig(TaskConfig):
    """One noisy in-context recall segment: `num_examples` sequences of `input_seq_len` (even) tokens."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len", "frac_noise")
    legend: ClassVar[str] = "k3 key · v12 value · n20 noise · k3→12 a key seen before: label its value"

    task: Literal["noisy_recall"] = "noisy_recall"
    vocab_size: int = Field(32, ge=4)
    input_seq_len: int = Field(128, ge=4)
    noise_vocab_size: int = Field(16, ge=1, description="the last this many token ids are noise")
    frac_noise: float = Field(0.2, ge=0.0, lt=1.0, description="probability that a slot is a noise pair")

    @model_validator(mode="after")
    def _check_length_and_vocabulary(self) -> NoisyRecallConfig:
        if self.input_seq_len % 2:
            raise ValueError(f"input_seq_len={self.input_seq_len} must be even (pairs of two tokens)")
        if self.vocab_size - self.noise_vocab_size < 2:
            raise ValueError(
                f"noise_vocab_size={self.noise_vocab_size} leaves {self.vocab_size - self.noise_vocab_size} "
                f"of vocab_size={self.vocab_size} for keys and values: at most vocab_size − 2 allowed"
            )
        return self

    @property
    def num_kv_tokens(self) -> int:
        """Token ids [0, K) hold keys and values; [K, V) are noise."""
        return self.vocab_size - self.noise_vocab_size

    def mark(self, token: int) -> str:
        if token >= self.num_kv_tokens:
            return f"n{token}"
        return f"{'kv'[token >= self.num_kv_tokens // 2]}{token}"

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        inputs, labels = recall_pairs(
            self.num_examples, self.input_seq_len, self.num_kv_tokens, self.noise_vocab_size, self.frac_noise, gen
        )
        return Segment(inputs, labels, self.slice_fields())
