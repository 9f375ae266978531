"""The causal long convolution summed directly: the reference the FFT path is tested against, and its last position."""

from __future__ import annotations

import torch

from zoology.ops.autocast import autocast_off


@autocast_off
def direct_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{j≤t} h[:, j] u[..., t−j], one lag at a time (O(seq²)): u (batch, channels, seq), h (channels,
    taps; taps past its end are 0) -> y (batch, channels, seq) in u's dtype."""
    seq = u.shape[-1]
    y = torch.zeros_like(u)
    for lag in range(min(seq, h.shape[-1])):
        y[..., lag:] += h[:, lag, None] * u[..., : seq - lag]
    return y


def causal_conv_last(history: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The convolution at the last position t of history (batch, channels, t + 1): Σ_{j≤t} h[:, j] u_{t−j},
    with h (channels, ≥ t + 1) -> (batch, channels)."""
    t = history.shape[-1]
    return (history * h[:, :t].flip(-1)).sum(-1)


def causal_toeplitz(h: torch.Tensor, seq_len: int) -> torch.Tensor:
    """The convolution as a matrix per channel, T[c, t, s] = h[c, t − s] for s ≤ t (0 above the diagonal and for
    lags past h's end), so that Σ_s T[c, t, s] u[..., c, s] is the causal convolution: h (channels, taps) ->
    T (channels, seq_len, seq_len) in h's dtype."""
    lags = torch.arange(seq_len, device=h.device)[:, None] - torch.arange(seq_len, device=h.device)[None, :]
    taps = torch.nn.functional.pad(h[:, :seq_len], (0, max(0, seq_len - h.shape[-1])))
    return taps[:, lags.clamp_min(0)].masked_fill(lags < 0, 0.0)
