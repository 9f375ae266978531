"""In-context recall (MAD task 1): key–value pairs whose keys repeat; at every repeat, recall the value.

    k1 v1 k2 v2 … kS−1 vS−1 | kq vq        S = L/2 slots of two tokens; the last is the probe pair
    label at each key seen at an earlier slot: its value (at the key's position); kq always

Keys are uniform with replacement over [0, V/2); each key's value is drawn once per example, uniform
over [V/2, V), and kept at every repeat. The probe repeats the key of a uniformly chosen earlier slot.
The model reads all L tokens: the last (vq) is only a target, its label sitting at position L − 2
and position L − 1 having none, so a causal model computes exactly what it would on the first L − 1
tokens against the next ones (the definition's "drop the last token"). Training segments set
`labels: next_token` (every position labelled with the next token); test segments keep the task's
labels. `recall_pairs` also builds noisy in-context recall (zoology/data/noisy_recall.py).
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import in_row_blocks, repeats_earlier
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import TaskConfig


def recall_pairs(
    n: int, L: int, num_kv_tokens: int, noise_vocab_size: int, frac_noise: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), both (n, L): L/2 two-token slots over keys [0, K/2) and values [K/2, K),
    K = num_kv_tokens. Each of the first L/2 − 1 slots is a noise pair (two uniform tokens of
    [K, K + noise_vocab_size)) with probability `frac_noise`, else a key and its value; an example
    whose slots all came out noise gets one uniformly chosen slot back as a pair. The last slot is
    the probe: the key of a uniformly chosen earlier pair, with its value. Labels: the value at every
    key that an earlier pair holds (the probe's key always); noise is never labelled."""
    half, S = num_kv_tokens // 2, L // 2

    def draw(n: int) -> tuple[torch.Tensor, ...]:
        keys = torch.randint(0, half, (n, S), generator=gen)
        dictionary = torch.randint(half, num_kv_tokens, (n, half), generator=gen)
        real = torch.rand(n, S - 1, generator=gen)
        rescued = torch.randint(0, S - 1, (n,), generator=gen)
        probe = torch.rand(n, S - 1, generator=gen)
        if not noise_vocab_size:
            return keys, dictionary, real, rescued, probe
        noise = torch.randint(num_kv_tokens, num_kv_tokens + noise_vocab_size, (n, S, 2), generator=gen)
        return keys, dictionary, real, rescued, probe, noise

    return in_row_blocks(n, L, draw, functools.partial(_recall_pairs, half, frac_noise))


def _recall_pairs(
    half: int,
    frac_noise: float,
    keys: torch.Tensor,
    dictionary: torch.Tensor,
    uniform_real: torch.Tensor,
    rescued: torch.Tensor,
    uniform_probe: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of `recall_pairs` from its draws: keys (n, S), each example's value of every
    key (n, K/2), a uniform number per slot but the last (n, S − 1) deciding which are real pairs, the
    slot made real in an example of noise only (n,), a uniform number per slot choosing the probe's
    slot among the real ones (n, S − 1), and the noise pairs (n, S, 2), or None without noise."""
    n, S = keys.shape
    real = uniform_real >= frac_noise
    all_noise = ~real.any(dim=1)
    real[all_noise, rescued[all_noise]] = True
    probe_slot = uniform_probe.masked_fill(~real, -1.0).argmax(dim=1, keepdim=True)
    keys = torch.cat([keys[:, :-1], keys.gather(1, probe_slot)], dim=1)
    real = torch.cat([real, real.new_ones(n, 1)], dim=1)
    values = dictionary.gather(1, keys)
    pairs = torch.stack([keys, values], dim=2)
    if noise is not None:
        pairs = torch.where(real[..., None], pairs, noise)
    not_a_key = half + torch.arange(S)  # a distinct stand-in per noise slot: never equal to a key
    recalled = repeats_earlier(torch.where(real, keys, not_a_key), half + S)
    labels = torch.full((n, 2 * S), IGNORE_INDEX, dtype=torch.long)
    labels[:, 0::2] = values.masked_fill(~recalled, IGNORE_INDEX)
    return pairs.reshape(n, 2 * S), labels


class InContextRecallConfig(TaskConfig):
    """One in-context recall segment: `num_examples` sequences of `input_seq_len` (even) tokens."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len")
    legend: ClassVar[str] = "k3 key · v12 value · k3→12 a key seen before: label its value"

    task: Literal["in_context_recall"] = "in_context_recall"
    vocab_size: int = Field(16, ge=4)
    input_seq_len: int = Field(128, ge=4)

    @model_validator(mode="after")
    def _check_length(self) -> InContextRecallConfig:
        if self.input_seq_len % 2:
            raise ValueError(f"input_seq_len={self.input_seq_len} must be even (pairs of two tokens)")
        return self

    def mark(self, token: int) -> str:
        return f"{'kv'[token >= self.vocab_size // 2]}{token}"

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        inputs, labels = recall_pairs(self.num_examples, self.input_seq_len, self.vocab_size, 0, 0.0, gen)
        return Segment(inputs, labels, self.slice_fields())
