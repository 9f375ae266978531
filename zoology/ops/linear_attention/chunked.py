"""The chunked view of feature-map attention: per chunk of c positions, the state of the chunks before it plus
the c×c kernel matrix inside it, O(l·D·d_h); the per-position D×d_h outer products are never built.

`chunked` evaluates the intra-chunk kernel directly (`kernel(q, k)`, so a kernel that is a square stays
exactly ≥ 0 there) and normalises with the rounding floor of `normalise` (ReBased); `chunked_on_features`
takes φ(q), φ(k) already mapped, with the kernel φ(q)·φ(k), and a plain ε (LinearAttention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoology.ops.autocast import autocast_off
from zoology.ops.feature_maps import FeatureMap, Kernel
from zoology.ops.linear_attention.normalise import normalise


@autocast_off
def chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: Kernel,
    feature_map: FeatureMap,
    eps: float,
    chunk_size: int,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """y (batch, heads, seq, d_h) from q, k (batch, heads, seq, f), v (batch, heads, seq, d_h), and the final
    state: S = Σ v φ(k)ᵀ (batch, heads, d_h, D) and z = Σ φ(k) (batch, heads, D)."""
    b, h, seq_len, _ = q.shape
    n_chunks = -(-seq_len // chunk_size)
    pad = n_chunks * chunk_size - seq_len
    valid = torch.ones(seq_len, 1, dtype=q.dtype, device=q.device)
    q, k, v, valid = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, valid))
    q, k, v = (t.view(b, h, n_chunks, chunk_size, t.shape[-1]) for t in (q, k, v))
    phi_q = feature_map(q)
    phi_k = feature_map(k) * valid.view(n_chunks, chunk_size, 1)

    chunk_states = phi_k.transpose(-1, -2) @ v
    states = chunk_states.cumsum(dim=2)
    normalisers = phi_k.sum(dim=-2).cumsum(dim=2)
    states_before = F.pad(states, (0, 0, 0, 0, 1, 0))[:, :, :-1]
    normalisers_before = F.pad(normalisers, (0, 0, 1, 0))[:, :, :-1]

    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    scores = kernel(q, k).masked_fill(~causal, 0.0)
    numerator = phi_q @ states_before + scores @ v
    denominator = (phi_q * normalisers_before[..., None, :]).sum(-1) + scores.sum(-1)
    with torch.no_grad():
        normalisers_here = normalisers_before[..., None, :] + phi_k.cumsum(-2)
    y = normalise(numerator, denominator, phi_q, normalisers_here, eps).reshape(b, h, n_chunks * chunk_size, -1)[
        :, :, :seq_len
    ]
    return y, (states[:, :, -1].transpose(-1, -2), normalisers[:, :, -1])


@autocast_off
def chunked_on_features(
    phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, eps: float, chunk_size: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """y_t = φ(q_t)ᵀ S_t / (φ(q_t)·z_t + ε) (batch, heads, seq, d_h) from φ(q), φ(k) (batch, heads, seq, D) and
    v (batch, heads, seq, d_h), and the final state S = Σ φ(k) vᵀ (batch, heads, D, d_h), z = Σ φ(k) (…, D)."""
    b, h, l, _ = phi_q.shape
    c = chunk_size
    n = -(-l // c)
    q, k, v = (F.pad(t, (0, 0, 0, n * c - l)).view(b, h, n, c, t.shape[-1]) for t in (phi_q, phi_k, v))
    kv = k.transpose(-1, -2) @ v
    kz = k.sum(-2)
    S = torch.cumsum(kv, dim=2)
    z = torch.cumsum(kz, dim=2)
    S_before = F.pad(S, (0, 0, 0, 0, 1, 0))[:, :, :n]
    z_before = F.pad(z, (0, 0, 1, 0))[:, :, :n]
    scores = (q @ k.transpose(-1, -2)).tril()
    numerator = q @ S_before + scores @ v
    denominator = (q * z_before[..., None, :]).sum(-1) + scores.sum(-1)
    y = numerator / (denominator[..., None] + eps)
    return y.reshape(b, h, n * c, -1)[:, :, :l], (S[:, :, -1].clone(), z[:, :, -1].clone())
