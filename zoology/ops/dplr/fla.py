"""Adapters from the recurrences of `zoology.ops.dplr` to fla-core's Triton ops (CUDA; the `fla` extra).

Every adapter takes our [batch, T, H, dim] tensors (fla's layout too) and returns o (batch, T, H, V) in q's
dtype and, with final_state, S (batch, H, K, V) in float32 (fla's [N, H, K, V], key first). What each one
fixes, pinned by tests/test_fla_kernels.py against `reference_dplr`:
- scale: passed explicitly everywhere (fla defaults to K^{-1/2}; Mamba-2 and RWKV-7 use 1);
- L2 norms of the delta rule are ours, outside the kernel (use_qk_l2norm_in_kernel=False), so no ε differs;
- chunk_gated_delta_rule takes (g, beta), the reverse of its naive reference's (beta, g);
- chunk_delta_rule refuses float32, so float32 runs fused_recurrent_delta_rule (a recurrent kernel with a backward);
- log-decays go in as float32 to the GLA and gated-delta ops (fla accumulates them in float32);
  q, k, v, beta and RWKV-7's r, w, k, v, a, b go in one dtype (bf16 under autocast), as fla's layers pass them.
"""

from __future__ import annotations

import torch

from zoology.ops.fla_support import load


def _state(S: torch.Tensor | None) -> torch.Tensor | None:
    return None if S is None else S.float()


def delta_rule(q, k, v, beta, scale: float, final_state: bool = False):
    """S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = scale · S_tᵀ q_t; beta (batch, T, H)."""
    ops = load("delta_rule")
    op = ops.fused_recurrent_delta_rule if q.dtype == torch.float32 else ops.chunk_delta_rule
    o, S = op(q, k, v, beta.to(q.dtype), scale=scale, output_final_state=final_state)
    return o, _state(S)


def gated_delta_rule(q, k, v, g, beta, scale: float, final_state: bool = False):
    """S_t = e^{g_t} (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = scale · S_tᵀ q_t; g, beta (batch, T, H)."""
    op = load("gated_delta_rule").chunk_gated_delta_rule
    o, S = op(q, k, v, g.float(), beta.to(q.dtype), scale=scale, output_final_state=final_state)
    return o, _state(S)


def gla(q, k, v, g, scale: float, final_state: bool = False):
    """S_t = diag(e^{g_t}) S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t; g (batch, T, H, K) per key channel, or
    (batch, T, H, 1) per head, broadcast over K (fla's per-channel kernel then serves a per-head gate)."""
    op = load("gla").chunk_gla
    o, S = op(q, k, v, g.float().expand_as(q).contiguous(), scale=scale, output_final_state=final_state)
    return o, _state(S)


def simple_gla(q, k, v, g, scale: float, final_state: bool = False):
    """S_t = e^{g_t} S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t with g (batch, T, H) one log-decay per head."""
    op = load("simple_gla").chunk_simple_gla
    o, S = op(q, k, v, g=g.float(), scale=scale, output_final_state=final_state)
    return o, _state(S)


def rwkv7(r, w, k, v, a, b, final_state: bool = False):
    """S_t = diag(e^{w_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ, o_t = S_tᵀ r_t (scale 1); all (batch, T, H, 64)."""
    op = load("rwkv7").chunk_rwkv7
    dtype = r.dtype
    o, S = op(r, w.to(dtype), k, v, a.to(dtype), b.to(dtype), scale=1.0, output_final_state=final_state)
    return o, _state(S)
