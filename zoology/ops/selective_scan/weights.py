"""The selective scan as a matrix: with x fixed, y = C·h is linear in x, one causal l×l matrix per channel."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off


@autocast_off
def scan_weights(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """W (batch, d_in, seq, seq) with the scan's y_t[c] = Σ_{s≤t} W[c, t, s] x_s[c]:

        W[c, t, s] = Σ_n C_t[n] B_s[n] δ_s[c] exp(Σ_{s<r≤t} δ_r[c] A[c, n])   (s ≤ t; 0 above the diagonal).

    Time-major as `selective_scan`: delta (seq, batch, d_in), A (d_in, N), B, C (seq, batch, N), all in one
    float dtype, which W keeps. The exponents are differences of cumulative sums of δA taken in float64 (so a
    long sum loses no digits of a short difference) and masked before exp; one state n at a time.
    """
    seq = delta.shape[0]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=delta.device).tril()
    steps = delta.permute(1, 2, 0)  # (batch, d_in, seq)
    weights = steps.new_zeros(*steps.shape, seq)
    for n in range(A.shape[1]):
        decay = (steps.double() * A[:, n].double()[:, None]).cumsum(-1)
        exponents = (decay[..., :, None] - decay[..., None, :]).masked_fill(~causal, -torch.inf)
        read_write = C[:, :, n].T[:, None, :, None] * B[:, :, n].T[:, None, None, :]  # (batch, 1, t, s)
        weights += exponents.exp().to(weights.dtype) * read_write
    return weights * steps[..., None, :]
