"""The causal long convolution y[..., t] = Σ_{j≤t} h[..., j] u[..., t−j] (zeros before t = 0), one filter per channel.

Shapes: u (batch, channels, seq), h (channels, taps; taps past its end are 0) -> y (batch, channels, seq), in
float32 or wider.
fft.py is the training path (an FFT zero-padded to at least 2·seq, so it is linear, not circular; torch.fft on
the CPU and on CUDA alike); naive.py the direct O(seq²) sum it is tested against, that sum at one position,
which is what a recurrent `step` over the input history computes, and the convolution as a causal Toeplitz
matrix per channel (`causal_toeplitz`, y = T·u).
"""

from __future__ import annotations

from zoology.ops.long_conv.fft import fft_causal_conv, fft_size
from zoology.ops.long_conv.naive import causal_conv_last, causal_toeplitz, direct_causal_conv

__all__ = ["causal_conv_last", "causal_toeplitz", "direct_causal_conv", "fft_causal_conv", "fft_size"]
