"""Vectorised sampling primitives shared by the task generators.

Every function takes an explicit `torch.Generator` and draws nothing from global RNG state, so a
segment's data depend only on its config and seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch

Filler = Literal["random", "random_no_kv", "zero"]
FILLER_HELP = (
    "random: uniform over the whole vocabulary (the reference behaviour; may collide with the "
    "example's keys); random_no_kv: uniform over tokens that are not this example's keys or "
    "values; zero: token 0"
)

_CHUNK_ELEMENTS = 1 << 22
_BLOCK_TOKENS = 1 << 16
_OP_ELEMENTS = 1 << 15


def in_row_blocks(
    n: int,
    row_len: int,
    draw: Callable[[int], tuple[torch.Tensor, ...]],
    build: Callable[..., tuple[torch.Tensor, ...]],
    width: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """The n rows of build's outputs. draw(rows) makes every random draw of a block of rows (tensors
    with a row per example); build(*draws) turns some of those rows into output rows, drawing nothing.

    Blocks hold about 65,536 tokens; the block size depends on row_len only, so a seed's data do not
    depend on the machine. Each block is built in slices of at most 32,768 / width rows (width: the
    longest row of build's tensors, default row_len): torch runs an op that small on one thread
    (at::internal::GRAIN_SIZE elements), and a generator is many small ops, for which the threads'
    synchronisation costs more than it saves; on busy cores an op whose other thread waits for a core
    takes a scheduler slice (milliseconds) instead of microseconds. (Advanced indexing, t[index] or
    t[mask], opens a parallel region at any size: build uses gather, index_select and scatter.)
    Slices stay in cache, and each is copied into the preallocated result as soon as it is built,
    so its memory serves the next."""
    rows = max(1, _BLOCK_TOKENS // row_len)
    out: tuple[torch.Tensor, ...] = ()
    for start in range(0, n, rows):
        out = in_slices(draw(min(rows, n - start)), build, width or row_len, n, start, out)
    return out


def in_slices(
    draws: tuple[torch.Tensor, ...],
    build: Callable[..., tuple[torch.Tensor, ...]],
    width: int,
    n: int | None = None,
    start: int = 0,
    out: tuple[torch.Tensor, ...] = (),
) -> tuple[torch.Tensor, ...]:
    """build(*draws) in slices of at most 32,768 / width rows (see `in_row_blocks`), written to rows
    start … of `out` (n rows, allocated from the first slice when empty, n default the draws' rows)."""
    step = max(1, _OP_ELEMENTS // width)
    for first in range(0, len(draws[0]), step):
        part = build(*(d[first : first + step] for d in draws))
        out = out or tuple(t.new_empty((n or len(draws[0]), *t.shape[1:])) for t in part)
        for whole, rows_built in zip(out, part, strict=True):
            whole[start + first : start + first + len(rows_built)] = rows_built
    return out


def distinct_randint(n: int, k: int, low: int, high: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k) LongTensor; row i is a uniformly random ordered k-tuple of distinct integers of [low, high).

    Sparse case (k well below the range): draw m > k integers per row with replacement (m covers
    the expected repeats with a margin) and keep the first k distinct ones in draw order, which is
    exactly sequential sampling without replacement; the rare rows with fewer than k distinct
    draws are drawn again. Dense case: the first k entries of a random permutation of the range,
    in row chunks of bounded memory.
    """
    span = high - low
    if not 0 < k <= span:
        raise ValueError(f"cannot draw {k} distinct integers from [{low}, {high})")
    repeats = k * k / (2 * span)
    m = k + math.ceil(repeats + 3 * math.sqrt(repeats) + 2)
    if m >= 0.75 * span:
        rows = max(1, _CHUNK_ELEMENTS // span)
        return torch.cat(
            [
                torch.rand(min(rows, n - start), span, generator=gen).argsort(dim=1)[:, :k] + low
                for start in range(0, n, rows)
            ]
        )
    out: torch.Tensor | None = None
    todo = torch.arange(n)  # the rows still to draw
    while todo.numel():
        x = torch.randint(low, high, (todo.numel(), m), generator=gen)
        drawn, enough = in_slices((x,), functools.partial(_first_distinct, k, low, span), m)
        done = enough.nonzero().squeeze(1)
        if out is None:
            out = drawn  # its rows without k distinct draws are overwritten below
        else:
            out.index_copy_(0, todo.index_select(0, done), drawn.index_select(0, done))
        todo = todo.index_select(0, enough.logical_not().nonzero().squeeze(1))
    return out if out is not None else torch.empty(0, k, dtype=torch.long)


def _first_distinct(k: int, low: int, span: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(each row's first k distinct entries (n, k), whether the row has k (n,)) of x (n, m) in
    [low, low + span). Scatter, not boolean indexing, which opens a parallel region however small the
    tensor: each kept entry goes to the column of its rank, every other one to a spare column."""
    small_table = len(x) * span <= _OP_ELEMENTS  # the table: one op, serial below this size
    keep = ~(repeats_earlier(x - low, span) if small_table else repeats_earlier(x))
    rank = keep.cumsum(dim=1)
    column = torch.where(keep & (rank <= k), rank - 1, k)
    return x.new_empty(len(x), k + 1).scatter_(1, column, x)[:, :k], rank[:, -1] >= k


def repeats_earlier(x: torch.Tensor, num_values: int | None = None) -> torch.Tensor:
    """(n, m) bool: True where x[i, j] equals some x[i, j'] with j' < j. With values known to lie in
    [0, num_values): each row's first position of every value, from an (n, num_values) table;
    otherwise by a stable sort per row (slower)."""
    if num_values is not None:
        positions = torch.arange(x.shape[1]).expand_as(x)
        first = torch.full((x.shape[0], num_values), x.shape[1], dtype=torch.long)
        first.scatter_reduce_(1, x, positions, "amin")
        return first.gather(1, x) < positions
    ordered, order = x.sort(dim=1, stable=True)
    repeat = torch.zeros_like(x, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return torch.zeros_like(repeat).scatter_(1, order, repeat)


def weighted_sample_without_replacement(
    n: int, k: int, log_weights: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """(n, k) indices into `log_weights` drawn without replacement, in draw order (Gumbel top-k).

    Equivalent to k successive draws with probability proportional to the remaining weights.
    """
    u = torch.rand(n, log_weights.numel(), generator=gen).clamp_min_(1e-30)
    gumbel = u.log_().neg_().log_().neg_()
    return (gumbel + log_weights.float()).topk(k, dim=1).indices


def power_law_slots(n: int, k: int, space: int, power_a: float, gen: torch.Generator) -> torch.Tensor:
    """(n, k) distinct query slots in [0, space), in draw order; slot s has weight ∝ a·(s+1)^(a−1)."""
    i = torch.arange(1, space + 1, dtype=torch.float64)
    log_weights = math.log(power_a) + (power_a - 1) * i.log()
    return weighted_sample_without_replacement(n, k, log_weights, gen)


def random_tokens_excluding(
    shape: tuple[int, int], vocab_size: int, excluded: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Uniform tokens from [0, vocab_size) that avoid each row's `excluded` (n, m) tokens.

    Rejection sampling: draw everything, then redraw only the entries that hit their row's
    excluded set, looked up in a per-row table built for a chunk of rows at a time.
    """
    n = shape[0]
    if excluded.shape[1] >= vocab_size:
        raise ValueError(f"excluding {excluded.shape[1]} tokens leaves none of vocab_size={vocab_size}")
    x = torch.randint(0, vocab_size, shape, generator=gen)
    rows = max(1, _CHUNK_ELEMENTS // vocab_size)
    table = torch.zeros(min(rows, n), vocab_size, dtype=torch.bool)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        banned, block, chunk = excluded[start:stop], table[: stop - start], x[start:stop]
        block.scatter_(1, banned, True)
        row, col = block.gather(1, chunk).nonzero(as_tuple=True)
        while row.numel():
            redraw = torch.randint(0, vocab_size, (row.numel(),), generator=gen)
            chunk[row, col] = redraw
            again = block[row, redraw]
            row, col = row[again], col[again]
        block.scatter_(1, banned, False)
    return x


def filler_tokens(
    filler: Filler, shape: tuple[int, int], vocab_size: int, own_tokens: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """(n, L) background tokens; `own_tokens` (n, m) are each example's keys and values."""
    if filler == "random":
        return torch.randint(0, vocab_size, shape, generator=gen)
    if filler == "random_no_kv":
        return random_tokens_excluding(shape, vocab_size, own_tokens, gen)
    return torch.zeros(shape, dtype=torch.long)
