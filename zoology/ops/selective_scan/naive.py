"""The selective scan as a plain loop over positions: the reference the chunked and Triton scans are tested against."""

from __future__ import annotations

import torch


def reference_scan(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t (h_{−1} = 0), y_t = C_t·h_t, one position at a time: (y, h_last).

    x, delta (seq, batch, d_in); A (d_in, N); B, C (seq, batch, N) -> y (seq, batch, d_in), h (batch, d_in, N).
    """
    h = x.new_zeros(x.shape[1], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[0]):
        h = torch.exp(delta[t, :, :, None] * A) * h + (delta[t] * x[t])[..., None] * B[t, :, None, :]
        ys.append((h * C[t, :, None, :]).sum(-1))
    return torch.stack(ys), h
