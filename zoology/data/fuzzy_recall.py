"""Fuzzy in-context recall (MAD task 2): keys and values of several tokens; recall a repeated key's value.

    _ _ … _ | K1 W1 K2 W2 … Kp Wp … Km Wm | Kp Wp      left padding | pairs, the probe pair once | probe
    labels: every token of the value of a key seen at an earlier pair, predicted token by token (the
    label at position t is the token at t + 1, for t + 1 inside such a value); the final value always

Token V − 1 is the pad; of the other V − 1 tokens the first K = (V − 1) // 2 make keys, the rest
values. A key or a value is an ordered k-mer of distinct tokens, its length uniform over
`key_lengths` / `value_lengths` (inclusive; MAD trains with 1 … 3 for both and tests with keys of 3).
Keys and values are told apart by their tokens, so the pairs parse unambiguously.

Where the definition is silent (our choices, mirroring in-context recall, whose keys are uniform over
V/2 key tokens): each example has a dictionary of K distinct keys (as many keys as key tokens),
uniform given their lengths, each with a value drawn once (values may coincide). Pairs are keys drawn
uniformly with replacement from the dictionary, taken while they fit beside two copies of the probe;
the probe (a uniformly chosen dictionary key) is inserted once at a uniform position among those
pairs (always: the fix of the reference, which could leave the final query unseen) and repeated at
the end; the rest is left padding. As in in-context recall the model reads all L tokens and the last
is only a target; training segments set `labels: next_token` (pads and keys included).
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.sampling import distinct_randint, in_row_blocks, repeats_earlier
from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import TaskConfig


def ordered_tuples(codes: torch.Tensor, length: int, num_tokens: int) -> torch.Tensor:
    """(..., length): the codes-th ordered tuple of `length` distinct tokens of [0, num_tokens), for
    codes in [0, num_tokens!/(num_tokens − length)!) (mixed radix: the i-th digit picks among the
    tokens not used yet, in increasing order)."""
    tokens: list[torch.Tensor] = []
    rest = codes
    for i in range(length):
        radix = math.perm(num_tokens - i - 1, length - i - 1)
        token = rest // radix
        rest = rest % radix
        if len(tokens) == 2:
            used = (torch.minimum(*tokens), torch.maximum(*tokens))
        else:
            used = torch.stack(tokens, dim=-1).sort(dim=-1).values.unbind(-1) if tokens else ()
        for u in used:  # in increasing order
            token = token + (token >= u)
        tokens.append(token)
    return torch.stack(tokens, dim=-1)


_TUPLE_TABLE_ELEMENTS = 1 << 22


@functools.cache
def _tuple_table(num_tokens: int, shortest: int, longest: int) -> torch.Tensor | None:
    """Every ordered tuple of `shortest` … `longest` distinct tokens of [0, num_tokens), a row each,
    zero-padded to `longest` and stacked by length then code (None when that exceeds about 4M entries)."""
    lengths = range(shortest, longest + 1)
    if sum(math.perm(num_tokens, length) for length in lengths) * longest > _TUPLE_TABLE_ELEMENTS:
        return None
    parts = []
    for length in lengths:
        tuples = ordered_tuples(torch.arange(math.perm(num_tokens, length)), length, num_tokens)
        parts.append(torch.nn.functional.pad(tuples, (0, longest - length)))
    return torch.cat(parts)


def _key_tokens(code: torch.Tensor, length: torch.Tensor, num_tokens: int, shortest: int, longest: int) -> torch.Tensor:
    """(..., longest): the code-th ordered tuple of `length` distinct tokens of [0, num_tokens), each
    zero-padded to `longest` (a table lookup when the table is small, else ordered_tuples per length)."""
    table = _tuple_table(num_tokens, shortest, longest)
    if table is not None:
        first = torch.tensor([0] + [math.perm(num_tokens, m) for m in range(shortest, longest)]).cumsum(0)
        row = first.index_select(0, (length - shortest).flatten()).view_as(code) + code
        return table.index_select(0, row.flatten()).view(*code.shape, longest)  # not table[row]: see in_row_blocks
    out = code.new_zeros(*code.shape, longest)
    for m in range(shortest, longest + 1):
        tuples = ordered_tuples(code.clamp_max(math.perm(num_tokens, m) - 1), m, num_tokens)
        out[..., :m] = torch.where((length == m)[..., None], tuples, out[..., :m])
    return out


class FuzzyRecallConfig(TaskConfig):
    """One fuzzy-recall segment: `num_examples` sequences of `input_seq_len` tokens."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("vocab_size", "input_seq_len")
    legend: ClassVar[str] = (
        "k3 key token · v12 value token · _ pad · v8→12 label: the next token of a repeated key's value"
    )

    task: Literal["fuzzy_recall"] = "fuzzy_recall"
    vocab_size: int = Field(16, ge=7)
    input_seq_len: int = Field(128, ge=4)
    key_lengths: tuple[int, int] = Field((1, 3), description="(shortest, longest) key; lengths uniform in between")
    value_lengths: tuple[int, int] = Field((1, 3), description="(shortest, longest) value; lengths uniform in between")

    @model_validator(mode="after")
    def _check_lengths(self) -> FuzzyRecallConfig:
        for name, (shortest, longest), tokens in (
            ("key_lengths", self.key_lengths, self.num_key_tokens),
            ("value_lengths", self.value_lengths, self.num_value_tokens),
        ):
            if not 1 <= shortest <= longest <= tokens:
                raise ValueError(
                    f"{name}=({shortest}, {longest}) must satisfy 1 <= shortest <= longest <= {tokens} "
                    f"(the distinct {name.split('_')[0]} tokens of vocab_size={self.vocab_size})"
                )
        need = 2 * (self.key_lengths[1] + self.value_lengths[1])
        if self.input_seq_len < need:
            raise ValueError(
                f"input_seq_len={self.input_seq_len} must be at least 2·(longest key + longest value) = {need} "
                "(the probe pair twice)"
            )
        return self

    @property
    def num_key_tokens(self) -> int:
        return (self.vocab_size - 1) // 2

    @property
    def num_value_tokens(self) -> int:
        return self.vocab_size - 1 - self.num_key_tokens

    def mark(self, token: int) -> str:
        if token == self.vocab_size - 1:
            return "_"
        return f"{'kv'[token >= self.num_key_tokens]}{token}"

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        L = self.input_seq_len
        inputs, labels = in_row_blocks(self.num_examples, L, lambda rows: self._draw(rows, gen), self._build, L + 1)
        return Segment(inputs, labels, self.slice_fields())

    def _draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Every random draw of n examples: key lengths (n, K); for each key length, K distinct codes of
        keys of that length (n, K, lengths); value lengths (n, K); values (n, K, longest value) of
        distinct tokens; L/2 pairs drawn from the dictionary, more than fit (n, L/2); the probe (n, 1);
        a uniform number placing the probe among the pairs that fit (n, 1)."""
        K, pad = self.num_key_tokens, self.vocab_size - 1
        (kmin, kmax), (vmin, vmax) = self.key_lengths, self.value_lengths
        key_len = torch.randint(kmin, kmax + 1, (n, K), generator=gen)
        codes = [distinct_randint(n, K, 0, math.perm(K, length), gen) for length in range(kmin, kmax + 1)]
        value_len = torch.randint(vmin, vmax + 1, (n, K), generator=gen)
        values = distinct_randint(n * K, vmax, K, pad, gen).view(n, K, vmax)
        drawn = torch.randint(0, K, (n, self.input_seq_len // 2), generator=gen)
        probe = torch.randint(0, K, (n, 1), generator=gen)
        return key_len, torch.stack(codes, 2), value_len, values, drawn, probe, torch.rand(n, 1, generator=gen)

    def _build(
        self,
        key_len: torch.Tensor,
        codes: torch.Tensor,
        value_len: torch.Tensor,
        values: torch.Tensor,
        drawn: torch.Tensor,
        probe: torch.Tensor,
        uniform: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of the examples of `_draw`'s draws."""
        n, L, K, pad = len(key_len), self.input_seq_len, self.num_key_tokens, self.vocab_size - 1
        (kmin, kmax), vmax = self.key_lengths, self.value_lengths[1]
        # Each example's K pairs: the i-th key of a length takes the i-th code drawn for that length;
        # pair_tokens (n, K, longest key + longest value) holds the key's tokens then the value's.
        which = key_len - kmin
        rank = (which[..., None] == torch.arange(kmax - kmin + 1)).cumsum(dim=1).gather(2, which[..., None]) - 1
        code = codes.view(n, -1).gather(1, (rank.squeeze(2) * codes.shape[2] + which).view(n, -1)).view(n, K)
        keys = _key_tokens(code, key_len, K, kmin, kmax)
        pair_tokens = torch.cat([keys, keys.new_zeros(n, K, vmax)], 2)
        pair_tokens.scatter_(2, key_len[..., None] + torch.arange(vmax), values)
        pair_len = key_len + value_len

        fits = (pair_len.gather(1, drawn).cumsum(dim=1) <= L - 2 * pair_len.gather(1, probe)).sum(1, keepdim=True)
        insert_at = (uniform * (fits + 1)).long().clamp_max(fits)
        # Slots 0 … fits + 1: the drawn pairs with the probe inserted at insert_at, then the probe again.
        S = int(fits.max()) + 2  # <= L/2: the pairs and two probes fit in L tokens
        s = torch.arange(S)
        slot = torch.where(s < insert_at, drawn[:, :S], torch.cat([drawn.new_zeros(n, 1), drawn[:, : S - 1]], 1))
        slot = torch.where((s == insert_at) | (s == fits + 1), probe, slot)
        used = s <= fits + 1
        slot_len = pair_len.gather(1, slot).masked_fill(~used, 0)
        start = L - slot_len.sum(1, keepdim=True) + slot_len.cumsum(1) - slot_len  # right-aligned: the last ends at L
        recalled = repeats_earlier(torch.where(used, slot, K + s), K + S)

        # Each position's slot, counted from 1 (0: the left padding): how many slots start at or before it.
        starts = torch.zeros(n, L + 1, dtype=torch.long).scatter_(1, start, 1)  # unused slots: at L
        at = starts[:, :L].cumsum(1)
        # Per slot (index 0: the padding), the offset of its tokens in [pad | pair_tokens] minus its
        # start (the padding's: below −L, read as the pad), and the first position labelled as a
        # recalled value (L: none).
        table = torch.cat([pair_tokens.new_full((n, 1), pad), pair_tokens.view(n, -1)], 1)
        base = torch.cat([slot.new_full((n, 1), -L), 1 + slot * pair_tokens.shape[2] - start], 1)
        first_value = torch.where(recalled & used, start + key_len.gather(1, slot), L)
        first_value = torch.cat([first_value.new_full((n, 1), L), first_value], 1)
        position = torch.arange(L)
        inputs = table.gather(1, (base.gather(1, at) + position).clamp_min_(0))
        value = position >= first_value.gather(1, at)  # a recalled value's token
        labels = torch.full_like(inputs, IGNORE_INDEX)  # label at t: the token at t + 1
        labels[:, :-1] = torch.where(value[:, 1:], inputs[:, 1:], IGNORE_INDEX)
        return inputs, labels
