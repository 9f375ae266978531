"""Causal normalised linear attention with a feature map φ:

    y_t = Σ_{j≤t} K(q_t, k_j) v_j / (Σ_{j≤t} K(q_t, k_j) + ε),   K(q, k) = φ(q)·φ(k)

Shapes: q, k (batch, heads, seq, f); v (batch, heads, seq, d_h); φ maps f -> D (zoology.ops.feature_maps).
Recurrent state: S = Σ v φ(k)ᵀ and z = Σ φ(k). Everything runs in the dtype it is given (autocast is off
inside): callers pass float32 or float64 tensors.

naive.py is the quadratic view (the reference) and its normalised weight matrix W (y = W·v), chunked.py the
chunked views, recurrent.py the step and the state after a prefill, normalise.py the denominator with its
rounding floor.
"""

from __future__ import annotations

from zoology.ops.linear_attention.chunked import chunked, chunked_on_features
from zoology.ops.linear_attention.naive import quadratic, quadratic_weights, weights_on_features
from zoology.ops.linear_attention.normalise import normalise, rounding_floor
from zoology.ops.linear_attention.recurrent import final_state, step

__all__ = [
    "chunked",
    "chunked_on_features",
    "final_state",
    "normalise",
    "quadratic",
    "quadratic_weights",
    "rounding_floor",
    "step",
    "weights_on_features",
]
