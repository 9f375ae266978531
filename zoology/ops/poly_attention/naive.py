"""Causal polynomial-kernel attention in the masked l×l form: the references of the fused kernels and
Based's quadratic view.

With s_tj = scale · q_t·k_j and K_tj = a0 + a1·s_tj + a2·s_tj², masked to j ≤ t:
y_t = Σ_j K_tj v_j / (Σ_j K_tj + offset_t). q, k (…, seq, f), v (…, seq, d_h).
"""

from __future__ import annotations

import math

import torch

from zoology.ops.feature_maps import taylor_kernel


def reference_poly_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    coeffs: tuple[float, float, float],
    scale: float,
    offset: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What `causal_poly_attention` computes, in the masked l×l form in float32 (float64 for float64 inputs):
    y (batch, heads, seq, d_h) and den = Σ_{j≤t} K_tj (batch, heads, seq) in that dtype."""
    acc = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = (t.to(acc) for t in (q, k, v))
        a0, a1, a2 = coeffs
        seq_len = q.shape[-2]
        s = scale * (q @ k.transpose(-1, -2))
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
        kern = (a0 + s * (a1 + a2 * s)).masked_fill(~causal, 0.0)
        den = kern.sum(-1)
        if isinstance(offset, torch.Tensor):
            offset = offset.detach().to(acc)
        return (kern @ v) / (den + offset)[..., None], den


def causal_taylor_kernel(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """K_tj = 1 + s + s²/2 with s = q_t·k_j/√f for j ≤ t, else 0, in the dtype given: q, k (…, l, f) -> (…, l, l)."""
    l, f = q.shape[-2], q.shape[-1]
    causal = torch.ones(l, l, dtype=torch.bool, device=q.device).tril()
    return taylor_kernel(q @ k.transpose(-1, -2) / math.sqrt(f)).masked_fill(~causal, 0.0)


def quadratic_taylor_terms(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_{j≤t} K(q_t, k_j) v_j and Σ_{j≤t} K(q_t, k_j) with K = 1 + s + s²/2, s = q·k/√f, over the
    last-but-one axis, in the dtype given: q, k (…, l, f), v (…, l, d_h) -> (…, l, d_h), (…, l)."""
    weights = causal_taylor_kernel(q, k)
    return weights @ v, weights.sum(-1)


def taylor_weights(q: torch.Tensor, k: torch.Tensor, eps: float) -> torch.Tensor:
    """W_tj = K_tj / (Σ_{i≤t} K_ti + ε) (`causal_taylor_kernel`), so that Based's normalised output is W·v, in the
    dtype given: q, k (…, l, f) -> (…, l, l)."""
    weights = causal_taylor_kernel(q, k)
    return weights / (weights.sum(-1, keepdim=True) + eps)
