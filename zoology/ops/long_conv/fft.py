"""The causal long convolution by FFT: the training path, O(seq·log seq) per channel."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off


def fft_size(seq_len: int) -> int:
    """The transform length: the power of two at least 2·seq_len, so the circular convolution of two zero-padded
    length-seq_len signals is their linear (causal) one."""
    return 1 << max(1, 2 * seq_len - 1).bit_length()


@autocast_off
def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{j≤t} h[:, j] u[..., t−j]: u (batch, channels, seq), h (channels, taps; taps past its end
    are 0) -> y (batch, channels, seq), as irfft(rfft(u)·rfft(h)) over fft_size(seq) points in float32 (float64
    for float64 inputs), also for bf16 inputs and under autocast. Differentiable in u and h (the backward is
    the same transforms, also float32). Rounding spreads over positions: when later inputs change, an output
    moves by about 1e-7 (float32) or 1e-16 (float64) of max |y|."""
    seq = u.shape[-1]
    acc = torch.promote_types(torch.promote_types(u.dtype, h.dtype), torch.float32)
    n = fft_size(seq)
    u_f = torch.fft.rfft(u.to(acc), n=n)
    h_f = torch.fft.rfft(h[:, :seq].to(acc), n=n)
    return torch.fft.irfft(u_f * h_f, n=n)[..., :seq]
