"""Vectorised sampling primitives shared by the task generators.

Every function takes an explicit `torch.Generator` and draws nothing from global RNG state, so a
segment's data depend only on its config and seed.
"""

from __future__ import annotations

import torch


def shuffle_rows(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each row of (n, k) `x` independently permuted."""
    order = torch.rand(x.shape, generator=gen).argsort(dim=1)
    return x.gather(1, order)


def distinct_randint(n: int, k: int, low: int, high: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k) LongTensor; each row holds k distinct integers from [low, high) in random order.

    Small problems take a prefix of a random permutation. Large ones draw with replacement and
    redraw only the repeated entries until every row is distinct: the rule that picks which copy
    to keep looks at positions, never at values, so every k-subset is equally likely.
    """
    span = high - low
    if not 0 < k <= span:
        raise ValueError(f"cannot draw {k} distinct integers from [{low}, {high})")
    if n * span <= 1 << 22 or 2 * k > span:
        return torch.rand(n, span, generator=gen).argsort(dim=1)[:, :k] + low
    x = torch.randint(low, high, (n, k), generator=gen)
    rows = torch.arange(n)
    while rows.numel():
        sub = x[rows]
        ordered, order = sub.sort(dim=1, stable=True)
        repeated = torch.zeros_like(ordered, dtype=torch.bool)
        repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        redraw = torch.zeros_like(repeated).scatter_(1, order, repeated)
        count = int(redraw.sum())
        sub[redraw] = torch.randint(low, high, (count,), generator=gen)
        x[rows] = sub
        rows = rows[redraw.any(dim=1)]
    return shuffle_rows(x, gen)


def weighted_sample_without_replacement(
    n: int, k: int, log_weights: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """(n, k) indices into `log_weights` drawn without replacement, in draw order (Gumbel top-k).

    Equivalent to k successive draws with probability proportional to the remaining weights.
    """
    u = torch.rand(n, log_weights.numel(), generator=gen).clamp_min_(1e-30)
    gumbel = u.log_().neg_().log_().neg_()
    return (gumbel + log_weights.float()).topk(k, dim=1).indices


def random_tokens_excluding(
    shape: tuple[int, int], vocab_size: int, excluded: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Uniform tokens from [0, vocab_size) that avoid each row's `excluded` (n, m) tokens."""
    banned = excluded.sort(dim=1).values
    x = torch.randint(0, vocab_size, shape, generator=gen)
    while True:
        where = torch.searchsorted(banned, x).clamp_max(banned.shape[1] - 1)
        hit = banned.gather(1, where) == x
        count = int(hit.sum())
        if count == 0:
            return x
        x[hit] = torch.randint(0, vocab_size, (count,), generator=gen)
