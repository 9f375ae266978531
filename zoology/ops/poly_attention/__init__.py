"""Causal attention with a polynomial kernel of s = scale·q·k: K = a0 + a1·s + a2·s², y_t = Σ_{j≤t} K_tj v_j /
(Σ_{j≤t} K_tj + offset_t). Based is (1, 1, ½), ReBased (0, 0, 1).

naive.py is the masked l×l form (the kernels' reference, Based's quadratic view and its normalised weights),
chunked.py Based's chunked view, triton.py the fused Triton kernels (`use_fused` says when a layer's view runs them).
"""

from __future__ import annotations

from zoology.ops.poly_attention.chunked import chunked_taylor_terms
from zoology.ops.poly_attention.naive import (
    causal_taylor_kernel,
    quadratic_taylor_terms,
    reference_poly_attention,
    taylor_weights,
)
from zoology.ops.poly_attention.triton import SUPPORTED_DTYPES, available, causal_poly_attention, use_fused

__all__ = [
    "SUPPORTED_DTYPES",
    "available",
    "causal_poly_attention",
    "causal_taylor_kernel",
    "chunked_taylor_terms",
    "quadratic_taylor_terms",
    "reference_poly_attention",
    "taylor_weights",
    "use_fused",
]
