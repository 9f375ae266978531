"""Linear recurrences with a diagonal-plus-low-rank transition, the core of the delta-rule family, gated linear
attention, Mamba-2 (SSD) and RWKV-7. Per head, with the state S ∈ R^{K×V}:

    S_t = diag(e^{g_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ,    o_t = scale · S_tᵀ q_t,

g_t ≤ 0 a log-decay per key channel (or one per head); without a, b it is gated linear attention. The
delta rule S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ is a = k, b = −α_t β_t k, key β_t k.
Tensors are [batch, T, heads, dim], as fla-core's.

naive.py is the step and the plain loop over positions (the reference), chunked.py the chunked PyTorch form,
weights.py the token-to-token weights W with o = W·v (the transitions do not depend on v), fla.py the adapters
to fla-core's Triton ops (the `fla` extra; imported only when a CUDA fast path runs).
"""

from __future__ import annotations

from zoology.ops.dplr.chunked import chunked_dplr
from zoology.ops.dplr.naive import dplr_step, reference_dplr
from zoology.ops.dplr.weights import token_weights

__all__ = ["chunked_dplr", "dplr_step", "reference_dplr", "token_weights"]
