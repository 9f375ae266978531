"""The recurrent form of feature-map attention: S = Σ v φ(k)ᵀ (…, d_h, D) and z = Σ φ(k) (…, D)."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off
from zoology.ops.feature_maps import FeatureMap
from zoology.ops.linear_attention.normalise import normalise


@autocast_off
def final_state(k: torch.Tensor, v: torch.Tensor, feature_map: FeatureMap) -> tuple[torch.Tensor, torch.Tensor]:
    """The state after the whole sequence, (S, z), from k (…, seq, f) and v (…, seq, d_h)."""
    phi_k = feature_map(k)
    return v.transpose(-1, -2) @ phi_k, phi_k.sum(-2)


@autocast_off
def step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    feature_map: FeatureMap,
    eps: float,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One token: q_t, k_t (batch, heads, f), v_t (batch, heads, d_h) -> y_t (batch, heads, d_h) and the new
    (S, z), normalised as in `normalise`."""
    states, normalisers = state
    phi_q, phi_k = feature_map(q_t), feature_map(k_t)
    states = states + v_t[..., :, None] * phi_k[..., None, :]
    normalisers = normalisers + phi_k
    numerator = (states @ phi_q[..., None])[..., 0]
    y = normalise(numerator, (normalisers * phi_q).sum(-1), phi_q, normalisers, eps)
    return y, (states, normalisers)
