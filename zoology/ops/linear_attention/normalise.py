"""The normalisation of feature-map attention, with a floor for the rounding noise of its denominator."""

from __future__ import annotations

import torch


def normalise(
    numerator: torch.Tensor, denominator: torch.Tensor, phi_q: torch.Tensor, normalisers: torch.Tensor, eps: float
) -> torch.Tensor:
    """numerator / (max(denominator, 0) + ε + ρ), ρ = 8·u·|φ(q_t)|·|z_t| with u the unit roundoff.

    φ(q_t)·z_t is only known to within a few u·|φ(q_t)|·|z_t| (measured ≤ 1 u in float32 over 2000
    tokens), so where every kernel value is ~0 (q orthogonal to every past key, a square kernel)
    the computed denominator is rounding noise of either sign. The floor ρ keeps the output
    finite and of the order of the values there, and changes it by O(u) relative elsewhere.
    """
    rounding = rounding_floor(phi_q.norm(dim=-1), normalisers.norm(dim=-1), denominator.dtype)
    return numerator / (denominator.clamp_min(0.0) + eps + rounding)[..., None]


def rounding_floor(phi_q_norm: torch.Tensor, normalisers_norm: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ρ = 8·u·|φ(q_t)|·|z_t| (u the unit roundoff of `dtype`), without gradient: see `normalise`."""
    return (8 * torch.finfo(dtype).eps * phi_q_norm * normalisers_norm).detach()
