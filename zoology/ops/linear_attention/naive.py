"""The quadratic view of feature-map attention: the full causal l×l kernel matrix, O(l²) (the reference), and
that matrix normalised, the token-to-token weights W with y = W·v."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off
from zoology.ops.feature_maps import FeatureMap, Kernel
from zoology.ops.linear_attention.normalise import normalise, rounding_floor


@autocast_off
def quadratic(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Kernel, feature_map: FeatureMap, eps: float
) -> torch.Tensor:
    """y (batch, heads, seq, d_h) from q, k (batch, heads, seq, f) and v (batch, heads, seq, d_h): the
    kernel matrix masked to j ≤ t, normalised as in `normalise` (φ gives the rounding floor only)."""
    seq_len = q.shape[-2]
    scores = kernel(q, k)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, 0.0)
    with torch.no_grad():
        phi_q, normalisers = feature_map(q), feature_map(k).cumsum(-2)
    return normalise(scores @ v, scores.sum(-1), phi_q, normalisers, eps)


@autocast_off
def quadratic_weights(
    q: torch.Tensor, k: torch.Tensor, kernel: Kernel, feature_map: FeatureMap, eps: float
) -> torch.Tensor:
    """W (batch, heads, seq, seq) with `quadratic(q, k, v, …)` = W·v: W_tj = K(q_t, k_j) / (max(Σ_{i≤t} K(q_t, k_i),
    0) + ε + ρ_t) for j ≤ t, else 0, with the rounding floor ρ_t of `normalise`; q, k (batch, heads, seq, f)."""
    seq_len = q.shape[-2]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    scores = kernel(q, k).masked_fill(~causal, 0.0)
    phi_q, normalisers = feature_map(q), feature_map(k).cumsum(-2)
    rounding = rounding_floor(phi_q.norm(dim=-1), normalisers.norm(dim=-1), scores.dtype)
    return scores / (scores.sum(-1).clamp_min(0.0) + eps + rounding)[..., None]


@autocast_off
def weights_on_features(phi_q: torch.Tensor, phi_k: torch.Tensor, eps: float) -> torch.Tensor:
    """W (batch, heads, seq, seq) with `chunked_on_features(φ(q), φ(k), v, ε, …)` = W·v: W_tj = φ(q_t)·φ(k_j) /
    (Σ_{i≤t} φ(q_t)·φ(k_i) + ε) for j ≤ t, else 0; φ(q), φ(k) (batch, heads, seq, D)."""
    scores = (phi_q @ phi_k.transpose(-1, -2)).tril()
    return scores / (scores.sum(-1, keepdim=True) + eps)
