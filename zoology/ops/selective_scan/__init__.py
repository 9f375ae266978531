"""The selective scan of Mamba: h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t (h_{−1} = 0), y_t = C_t·h_t.

naive.py is the plain loop over positions (the reference), chunked.py the chunked PyTorch scan with its own
backward, triton.py the fused Triton kernels; `selective_scan` picks one (`backend`). weights.py materialises
the scan as one causal matrix per channel (y = W·x, for reading which positions an output drew on).
"""

from __future__ import annotations

import torch

from zoology.ops.selective_scan.chunked import chunked_scan
from zoology.ops.selective_scan.naive import reference_scan
from zoology.ops.selective_scan.triton import triton_available, triton_config, triton_scan
from zoology.ops.selective_scan.weights import scan_weights

__all__ = ["SCAN_BACKENDS", "reference_scan", "scan_weights", "selective_scan", "triton_available"]

SCAN_BACKENDS = ("auto", "torch", "triton")


def selective_scan(
    x, delta, A, B, C, chunk_size: int | None = None, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t·h_t with h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t, h_{−1} = 0: (y, h_last).

    Time-major: x, delta (seq, batch, d_in); A (d_in, N); B, C (seq, batch, N); all in one float dtype
    (the accumulator's) -> y (seq, batch, d_in), h_last (batch, d_in, N). h_last carries no gradient.
    backend: "torch" is the chunked scan (chunk_size positions per chunk); "triton" the Triton kernels (float32
    inside; on the CPU only in triton's interpreter, TRITON_INTERPRET=1); "auto" is "triton" for CUDA tensors of
    at most 32-bit floats when triton is installed, else "torch".
    """
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {SCAN_BACKENDS}")
    if backend == "auto":
        fits = x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
        backend = "triton" if fits and triton_available() else "torch"
    if backend == "triton":
        return triton_scan(x, delta, A, B, C, *triton_config(x.shape[2], A.shape[1]))
    return chunked_scan(x, delta, A, B, C, chunk_size)
