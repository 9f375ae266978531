"""The diagonal-plus-low-rank recurrence in chunks (the PyTorch training path, CPU and GPU, and float64).

Inside a chunk of c positions, with W_t = Σ_{s≤t} g_s the cumulative log-decay from the chunk's start
(W'_t = W_t − g_t) and S_0 the state before the chunk, the low-rank reads u_t = S_{t−1}ᵀ a_t solve

    u = (I − M_ab)⁻¹ (ã S_0 + M_ak v),   M_xy[t, s] = Σ_j x_tj y_sj e^{W'_tj − W_sj} (s < t),   ã_t = e^{W'_t} ⊙ a_t,

the inverse of a unit lower-triangular matrix (the WY/UT transform of the delta rule, with decays), and then

    o_t = scale · (S_0ᵀ (e^{W_t} ⊙ q_t) + Σ_{s≤t} (q_tᵀ e^{W_t − W_s} b_s) u_s + (q_tᵀ e^{W_t − W_s} k_s) v_s),
    S_c = e^{W_c} S_0 + Σ_s (e^{W_c − W_s} ⊙ b_s) u_sᵀ + (e^{W_c − W_s} ⊙ k_s) v_sᵀ.

Every exponent is a difference W_t − W_s with t ≥ s, so ≤ 0: nothing is divided by a cumulative decay and
nothing overflows (an exponential that underflows to 0 stands for a weight that is below the smallest float).
Decays per channel need the pairwise differences for all (t, s, j), c·c·K numbers per chunk (c = 16 by
default); one decay per head (g of width 1) needs only c·c (c = 64). Everything that does not depend on S_0
is computed for all chunks at once; a loop over chunks carries S. Autograd gives the backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoology.ops.autocast import autocast_off

CHUNK_PER_CHANNEL = 16
CHUNK_PER_HEAD = 64


def _decays(W: torch.Tensor) -> torch.Tensor:
    """E[t, s] = e^{W_t − W_s} for s ≤ t, else 0: W (…, c, K) per channel -> (…, c, c, K), or (…, c, 1) per
    head -> (…, c, c). The exponent is masked before exp, so entries above the diagonal are exactly 0."""
    c = W.shape[-2]
    mask = torch.ones(c, c, dtype=torch.bool, device=W.device).tril()
    if W.shape[-1] == 1:
        return (W - W.transpose(-1, -2)).masked_fill(~mask, -torch.inf).exp()
    return (W[..., :, None, :] - W[..., None, :, :]).masked_fill(~mask[..., None], -torch.inf).exp()


def _previous_rows(E: torch.Tensor, per_head: bool) -> torch.Tensor:
    """E_prev[t] = E[t − 1] (zeros at t = 0): e^{W_{t−1} − W_s} for s < t, the decays seen from just before t."""
    rows = -2 if per_head else -3
    return F.pad(E.narrow(rows, 0, E.shape[rows] - 1), (0, 0) * (-1 - rows) + (1, 0))


def _decay_products(x: torch.Tensor, ys: tuple[torch.Tensor, ...], E: torch.Tensor, per_head: bool):
    """[M_y for y in ys], M_y[t, s] = Σ_j x_tj y_sj E[t, s(, j)] (…, c, c); x, y (…, c, K), E from `_decays`."""
    if per_head:
        return [(x @ y.transpose(-1, -2)) * E for y in ys]
    weighted = x[..., :, None, :] * E
    return [(weighted * y[..., None, :, :]).sum(-1) for y in ys]


def _inverse_unit_lower(M: torch.Tensor) -> torch.Tensor:
    """(I − M)⁻¹ for strictly lower-triangular M (…, c, c), by blocks: with the inverses A⁻¹, D⁻¹ of the two
    diagonal halves of a block, its inverse is [[A⁻¹, 0], [D⁻¹ C A⁻¹, D⁻¹]] (C the lower-left block of M), from
    1×1 blocks up, every level one batched product (several times faster than a batched triangular solve on the
    CPU, whose per-matrix calls dominate at these sizes)."""
    c = M.shape[-1]
    size = 1 << (c - 1).bit_length()
    M = F.pad(M, (0, size - c, 0, size - c))
    batch = M.shape[:-2]
    inverse = torch.ones(*batch, size, 1, 1, dtype=M.dtype, device=M.device)
    half = 1
    while half < size:
        n = size // (2 * half)
        blocks = M.view(*batch, n, 2 * half, n, 2 * half).diagonal(dim1=-4, dim2=-2).movedim(-1, -3)
        A, D = inverse[..., 0::2, :, :], inverse[..., 1::2, :, :]
        top = torch.cat([A, torch.zeros_like(A)], dim=-1)
        inverse = torch.cat([top, torch.cat([D @ blocks[..., half:, :half] @ A, D], dim=-1)], dim=-2)
        half *= 2
    return inverse[..., 0, :c, :c]


@autocast_off
def chunked_dplr(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    scale: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = diag(e^{g_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ (S_{−1} = 0), o_t = scale · S_tᵀ q_t, in chunks.

    q, k, a, b (batch, T, H, K); v (batch, T, H, V); g (batch, T, H, K) log-decays per channel, or
    (batch, T, H, 1) one per head; a = b = None: no low-rank term (gated linear attention). All in one float
    dtype, which the computation keeps -> o (batch, T, H, V), the final state S (batch, H, K, V).
    chunk_size: positions per chunk (None: 16 with decays per channel, 64 with one per head).
    """
    batch, seq, heads, dk = q.shape
    c = chunk_size or (CHUNK_PER_HEAD if g.shape[-1] == 1 else CHUNK_PER_CHANNEL)
    n = -(-seq // c)

    def chunks(t: torch.Tensor) -> torch.Tensor:
        """(batch, T, H, D) -> (batch, H, n, c, D), zeros after T (a zero log-decay: the state passes unchanged)."""
        return F.pad(t, (0, 0, 0, 0, 0, n * c - seq)).transpose(1, 2).reshape(batch, heads, n, c, t.shape[-1])

    q, k, v, g = (chunks(t) for t in (q, k, v, g))
    W = g.cumsum(-2)
    W_last = W[..., -1:, :]
    q_in = q * W.exp()
    decay_out = (W_last - W).exp()
    per_head = g.shape[-1] == 1
    E = _decays(W)
    if a is None:
        (M_qk,) = _decay_products(q, (k,), E, per_head)
    else:
        a, b = chunks(a), chunks(b)
        M_qk, M_qb = _decay_products(q, (k, b), E, per_head)
        M_ak, M_ab = _decay_products(a, (k, b), _previous_rows(E, per_head), per_head)
    # Per chunk, as lists (unbound once: indexing inside the loop would make autograd add a full-size zero
    # gradient per chunk): the inputs' parts of o and of the state update, and the state's decay.
    steps = [
        q_in.unbind(2),
        (M_qk @ v).unbind(2),
        ((k * decay_out).transpose(-1, -2) @ v).unbind(2),
        W_last.exp().transpose(-1, -2).unbind(2),
    ]
    if a is not None:
        inverse = _inverse_unit_lower(M_ab)
        steps += [
            (inverse @ (M_ak @ v)).unbind(2),
            (inverse @ (a * (W - g).exp())).unbind(2),
            M_qb.unbind(2),
            (b * decay_out).transpose(-1, -2).unbind(2),
        ]

    S = q.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for q_in_i, out_i, update_i, decay_i, *low_rank in zip(*steps):
        o = q_in_i @ S + out_i
        if low_rank:
            u_from_values, u_from_state, M_qb, b_out = low_rank
            u = u_from_values + u_from_state @ S
            o = o + M_qb @ u
            update_i = update_i + b_out @ u
        S = decay_i * S + update_i
        outputs.append(o)
    o = torch.stack(outputs, dim=2).reshape(batch, heads, n * c, -1)[:, :, :seq].transpose(1, 2)
    return scale * o, S
