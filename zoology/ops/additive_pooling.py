"""Causal additive (Fastformer-style) pooling over a window or the whole prefix (LEAP's two rounds).

With scores s_j (one per head) and weights α_j = exp(s_j) the pooled vector is
    g_t = Σ_{j∈W(t)} α_j u_j / Σ_{j∈W(t)} α_j,
W(t) = {max(0, t−w+1) … t} for a window of w tokens (the token itself and the w−1 before it), or 0 … t
when global. Every exponent is taken relative to a maximum that cancels in the ratio and is itself causal
(the window's maximum, or the running maximum of the prefix), so no exp overflows or underflows to 0/0 at
any length, and output t depends on tokens ≤ t only, bit for bit. Windows are summed directly over bands
of keys, never as a difference of two long cumulative sums. `pooling_weights` is the same pooling as an
l×l matrix (what a query's pooled vector draws on). All run in the dtype given, autocast off.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoology.ops.autocast import autocast_off


@autocast_off
def pool_global(
    u: torch.Tensor, scores: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefix pooling: u (b, H, l, d_h), scores (b, H, l) -> (Σ α u, Σ α, running max), each term
    α_j = exp(s_j − m_t) with m_t = max_{j≤t} s_j; shapes (b, H, l, d_h), (b, H, l), (b, H, l).

    Within a chunk the weights form a c×c causal matrix; earlier chunks enter through their sums,
    combined by an (l/c)×(l/c) matrix of rescaling factors exp(M_chunk − running max) ≤ 1.
    """
    b, h, seq_len, d_h = u.shape
    c = chunk_size
    n = -(-seq_len // c)
    pad = n * c - seq_len
    u = F.pad(u, (0, 0, 0, pad)).view(b, h, n, c, d_h)
    scores = F.pad(scores, (0, pad), value=-math.inf).view(b, h, n, c)
    running_max = scores.detach().flatten(2).cummax(-1).values.view(b, h, n, c)

    causal = torch.ones(c, c, dtype=torch.bool, device=u.device).tril()
    exponents = (scores[..., None, :] - running_max[..., :, None]).masked_fill(~causal, -math.inf)
    weights = exponents.exp()
    numerator = weights @ u
    denominator = weights.sum(-1)

    chunk_max = scores.detach().amax(-1)
    chunk_weights = (scores - chunk_max[..., None]).exp()
    chunk_num = (chunk_weights[..., None] * u).sum(-2)
    chunk_den = chunk_weights.sum(-1)
    end_max = running_max[..., -1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=u.device).tril()
    rescale = (chunk_max[..., None, :] - end_max[..., :, None]).masked_fill(~earlier, -math.inf).exp()
    prefix_num = F.pad(rescale @ chunk_num, (0, 0, 1, 0))[:, :, :-1]
    prefix_den = F.pad(rescale @ chunk_den[..., None], (0, 0, 1, 0))[:, :, :-1, 0]
    prefix_max = F.pad(end_max, (1, 0), value=-math.inf)[:, :, :-1]
    carry = (prefix_max[..., None] - running_max).exp()
    numerator = numerator + carry[..., None] * prefix_num[..., None, :]
    denominator = denominator + carry * prefix_den[..., None]

    def unchunk(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, h, n * c, *t.shape[4:])[:, :, :seq_len]

    return unchunk(numerator), unchunk(denominator), unchunk(running_max)


@autocast_off
def pool_window(u: torch.Tensor, scores: torch.Tensor, window: int, chunk_size: int) -> torch.Tensor:
    """Windowed pooling g (b, H, l, d_h) from u (b, H, l, d_h), scores (b, H, l).

    Queries are cut into chunks of c; each chunk sees a band of its own and the K = ⌈(w−1)/c⌉
    previous chunks, masked to the w keys of each query; exponents are relative to the window max.
    """
    b, h, seq_len, d_h = u.shape
    c = min(window, chunk_size)
    lookback = -(-(window - 1) // c)
    n = -(-seq_len // c)
    pad = n * c - seq_len
    u = F.pad(u, (0, 0, lookback * c, pad)).view(b, h, n + lookback, c, d_h)
    scores = F.pad(scores, (lookback * c, pad), value=-math.inf).view(b, h, n + lookback, c)
    band_u = u.unfold(2, lookback + 1, 1).permute(0, 1, 2, 5, 3, 4).reshape(b, h, n, (lookback + 1) * c, d_h)
    band_scores = scores.unfold(2, lookback + 1, 1).transpose(-1, -2).reshape(b, h, n, 1, (lookback + 1) * c)

    query = torch.arange(c, device=u.device)[:, None] + lookback * c
    key = torch.arange((lookback + 1) * c, device=u.device)
    in_window = (query - key >= 0) & (query - key < window)
    exponents = band_scores.masked_fill(~in_window, -math.inf)
    exponents = exponents - exponents.detach().amax(-1, keepdim=True)
    weights = exponents.exp()
    g = (weights @ band_u) / weights.sum(-1, keepdim=True)
    return g.reshape(b, h, n * c, d_h)[:, :, :seq_len]


@autocast_off
def pooling_weights(scores: torch.Tensor, window: int | None) -> torch.Tensor:
    """The pooling as a matrix, g = P·u: P_tj = α_j / Σ_{i∈W(t)} α_i for j ∈ W(t), else 0, with exponents
    relative to each row's maximum; scores (b, H, l) -> P (b, H, l, l). window None: W(t) = 0 … t."""
    seq_len = scores.shape[-1]
    query = torch.arange(seq_len, device=scores.device)[:, None]
    key = torch.arange(seq_len, device=scores.device)[None, :]
    seen = (key <= query) if window is None else (key <= query) & (key > query - window)
    exponents = scores[..., None, :].expand(*scores.shape[:-1], seq_len, seq_len).masked_fill(~seen, -math.inf)
    return exponents.softmax(dim=-1)
