"""The recurrence's token-to-token weights: its transitions never depend on v, so o is linear in v."""

from __future__ import annotations

import torch

from zoology.ops.dplr.chunked import chunked_dplr


def token_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    g: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    scale: float = 1.0,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """W (batch, H, T, T) with `chunked_dplr(q, k, v, g, a, b, scale)`'s o_t = Σ_{s≤t} W[t, s] v_s per head:

        W[t, s] = scale · q_tᵀ (Π_{s<r≤t} (diag(e^{g_r}) + b_r a_rᵀ)) k_s   (0 for s > t),

    which without a, b is the gated kernel scale · Σ_j q_tj k_sj e^{G_tj − G_sj} (G the cumulative log-decay).
    Computed as the chunked recurrence on one-hot values v_s = e_s (V = T, the WY/UT form of every chunk
    included), so it is exactly the training path's arithmetic. Shapes and dtype as `chunked_dplr`'s inputs.
    """
    batch, seq, heads, _ = q.shape
    one_hot = torch.eye(seq, dtype=q.dtype, device=q.device)[None, :, None, :].expand(batch, seq, heads, seq)
    o, _ = chunked_dplr(q, k, one_hot, g, a, b, scale, chunk_size)
    return o.transpose(1, 2)
