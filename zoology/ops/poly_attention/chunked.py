"""Based's chunked view: the Taylor-kernel attention terms per chunk, O(l·D·d_h) instead of O(l²).

Inside each chunk of c positions the masked c×c kernel matrix K = 1 + s + s²/2 (`naive.quadratic_taylor_terms`);
the chunks before enter through their state S = Σ v φ(k)ᵀ and normaliser z = Σ φ(k) with φ the Taylor
feature map, φ(q)·φ(k) = K. The per-position D×d_h outer products are never built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from zoology.ops.poly_attention.naive import quadratic_taylor_terms


def chunked_taylor_terms(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    feature_map: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator Σ_{j≤t} K_tj v_j (b, H, l, d_h) and denominator Σ_{j≤t} K_tj (b, H, l) from q, k (b, H, l, f)
    and v (b, H, l, d_h), in the dtype given: quadratic inside each chunk of c positions, plus φ(q)·S and
    φ(q)·z with S, z summed over the earlier chunks only (feature_map is the Taylor map φ)."""
    b, h, l, _ = q.shape
    c = min(chunk_size, l)
    n = -(-l // c)
    if n == 1:
        return quadratic_taylor_terms(q, k, v)
    pad = n * c - l
    q, k, v = (F.pad(t, (0, 0, 0, pad)).view(b, h, n, c, t.shape[-1]) for t in (q, k, v))
    num, den = quadratic_taylor_terms(q, k, v)
    phi_q, phi_k = feature_map(q), feature_map(k)
    kv = phi_k.transpose(-1, -2) @ v
    k_sum = phi_k.sum(-2)
    states = torch.cat([torch.zeros_like(kv[:, :, :1]), kv[:, :, :-1].cumsum(2)], dim=2)
    normalisers = torch.cat([torch.zeros_like(k_sum[:, :, :1]), k_sum[:, :, :-1].cumsum(2)], dim=2)
    num = num + phi_q @ states
    den = den + (phi_q @ normalisers[..., None])[..., 0]
    return num.reshape(b, h, n * c, -1)[:, :, :l], den.reshape(b, h, n * c)[:, :, :l]
