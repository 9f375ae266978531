"""The quadratic view of feature-map attention: the full causal l×l kernel matrix, O(l²) (the reference)."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off
from zoology.ops.feature_maps import FeatureMap, Kernel
from zoology.ops.linear_attention.normalise import normalise


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
