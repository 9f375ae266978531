"""The diagonal-plus-low-rank recurrence one position at a time: its step, and the plain loop over positions
that the chunked form and the fla-core adapters are tested against."""

from __future__ import annotations

import torch


def dplr_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    scale: float,
    S: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S ← diag(e^g) S + b (aᵀ S) + k vᵀ, o = scale · Sᵀ q, for one position: q, k, a, b (batch, H, K),
    v (batch, H, V), g (batch, H, K) or (batch, H, 1), S (batch, H, K, V) -> o (batch, H, V), the new S.
    a = b = None: no low-rank term."""
    update = k[..., :, None] * v[..., None, :]
    if a is not None:
        update = update + b[..., :, None] * (a[..., None, :] @ S)
    S = torch.exp(g)[..., None] * S + update
    return scale * (q[..., None, :] @ S)[..., 0, :], S


def reference_dplr(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of `dplr_step` over positions from S = 0, in the dtype given: q, k, a, b (batch, T, H, K),
    v (batch, T, H, V), g (batch, T, H, K) or (batch, T, H, 1) -> o (batch, T, H, V), S (batch, H, K, V)."""
    batch, seq, heads, dk = q.shape
    S = q.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for t in range(seq):
        low_rank = (None, None) if a is None else (a[:, t], b[:, t])
        o, S = dplr_step(q[:, t], k[:, t], v[:, t], g[:, t], *low_rank, scale, S)
        outputs.append(o)
    return torch.stack(outputs, dim=1), S
