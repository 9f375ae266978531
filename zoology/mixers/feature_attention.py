"""Causal normalised linear attention with a feature map, shared by the kernel mixers (Based, ReBased).

    y_t = Σ_{j≤t} K(q_t, k_j) v_j / (Σ_{j≤t} K(q_t, k_j) + ε),   K(q, k) = φ(q)·φ(k)

Shapes: q, k (batch, heads, seq, f); v (batch, heads, seq, d_h); φ maps f -> D. Recurrent state:
S = Σ v φ(k)ᵀ (batch, heads, d_h, D) and z = Σ φ(k) (batch, heads, D). Everything here runs in the
dtype it is given (autocast is switched off inside): callers pass float32 or float64 tensors.

Two training views of the same function: `quadratic` (masked l×l kernel matrix, O(l²)) and `chunked`
(inter-chunk state plus intra-chunk kernel matrix, O(l·D·d_h)); the per-position D×d_h outer products
are never built. The intra-chunk part evaluates K directly (`kernel(q, k)`), so a kernel that is a
square stays exactly ≥ 0 there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FeatureMap = Callable[[torch.Tensor], torch.Tensor]


def _autocast_off(fn):
    """Run fn with autocast off on its first tensor argument's device, so it computes in the dtype given."""

    @functools.wraps(fn)
    def wrapped(first, *args, **kwargs):
        with torch.autocast(first.device.type, enabled=False):
            return fn(first, *args, **kwargs)

    return wrapped


def square_feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = [x_i² / √f, √2·x_i x_j / √f for i<j]: φ(q)·φ(k) = (q·k / √f)², D = f(f+1)/2."""
    f = x.shape[-1]
    i, j = torch.triu_indices(f, f, offset=1, device=x.device)
    return torch.cat([x * x, math.sqrt(2.0) * x[..., i] * x[..., j]], dim=-1) / math.sqrt(f)


def square_kernel(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(q·k / √f)² for every query/key pair: (..., lq, f), (..., lk, f) -> (..., lq, lk)."""
    return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).square()


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


@_autocast_off
def final_state(k: torch.Tensor, v: torch.Tensor, feature_map: FeatureMap) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrent state after the whole sequence, S = Σ v φ(k)ᵀ (…, d_h, D) and z = Σ φ(k) (…, D)."""
    phi_k = feature_map(k)
    return v.transpose(-1, -2) @ phi_k, phi_k.sum(-2)


@_autocast_off
def quadratic(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Kernel, feature_map: FeatureMap, eps: float
) -> torch.Tensor:
    """The reference view: the full causal l×l kernel matrix. Returns y (batch, heads, seq, d_h)."""
    seq_len = q.shape[-2]
    scores = kernel(q, k)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, 0.0)
    with torch.no_grad():
        phi_q, normalisers = feature_map(q), feature_map(k).cumsum(-2)
    return normalise(scores @ v, scores.sum(-1), phi_q, normalisers, eps)


@_autocast_off
def chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: Kernel,
    feature_map: FeatureMap,
    eps: float,
    chunk_size: int,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The training view: returns y (batch, heads, seq, d_h) and the final state (S, z)."""
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


@_autocast_off
def step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    feature_map: FeatureMap,
    eps: float,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One token: q_t, k_t (batch, heads, f), v_t (batch, heads, d_h) -> y_t (batch, heads, d_h)."""
    states, normalisers = state
    phi_q, phi_k = feature_map(q_t), feature_map(k_t)
    states = states + v_t[..., :, None] * phi_k[..., None, :]
    normalisers = normalisers + phi_k
    numerator = (states @ phi_q[..., None])[..., 0]
    y = normalise(numerator, (normalisers * phi_q).sum(-1), phi_q, normalisers, eps)
    return y, (states, normalisers)
