"""A layer on a device (float32, or bf16 autocast) against the same layer in float64 on the CPU: the GPU check of
layers whose fast path is the same PyTorch code on CUDA (torch.fft there)."""

from __future__ import annotations

import pytest
import torch

from zoology import mixers

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
FLOAT32_TOLERANCE = 1e-4
"""Relative L2 error of a float32 layer (TF32 off) against float64, output and every gradient: measured at most
6e-6 on the CPU (float32 FFTs of 512 points and float32 projections); 1e-4 leaves room for cuFFT's ordering."""
BF16_TOLERANCE = 3e-2
"""Under bf16 autocast the projections and the short convolution round to bf16 (unit roundoff 3.9e-3) and the
FFT stays float32: measured at most 7.4e-3 relative L2 on the CPU, a few roundings deep; 3e-2 is 4× that and
still 30× below what a bf16 FFT or a bf16 state would give."""


def check_layer_on_device(name: str, kwargs: dict, device: str, precision: str) -> None:
    """Output, input gradient and every parameter gradient of a layer on `device` (float32 with TF32 off, or
    bf16 autocast) against the same layer in float64 on the CPU, as relative L2 errors."""
    torch.manual_seed(0)
    layer = mixers.build(name, d_model=64, **kwargs)
    reference = mixers.build(name, d_model=64, **kwargs)
    reference.load_state_dict(layer.state_dict())
    reference.double()
    layer.to(device)
    gen = torch.Generator().manual_seed(1)
    x, grad = torch.randn(4, 256, 64, generator=gen), torch.randn(4, 256, 64, generator=gen)
    x_ref = x.double().requires_grad_()
    reference(x_ref).backward(grad.double())
    x = x.to(device).requires_grad_()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = layer(x)
        y.float().backward(grad.to(device))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    tolerance = FLOAT32_TOLERANCE if precision == "fp32" else BF16_TOLERANCE
    with torch.no_grad():
        y_ref = reference(x.detach().cpu().double())
    pairs = [("output", y, y_ref), ("input gradient", x.grad, x_ref.grad)]
    pairs += [(n, p.grad, r.grad) for (n, p), (_, r) in zip(layer.named_parameters(), reference.named_parameters())]
    for what, got, want in pairs:
        error = float((got.detach().cpu().double() - want).norm() / want.norm())
        assert error <= tolerance, f"{name} on {device} ({precision}): {what} is {error:.1e} off float64"
