"""BaseConv with a long convolution: BaseConv's gating and residual around Hyena's implicit causal filter."""

from __future__ import annotations

import torch
from torch import nn

from zoology.mixers import token_weights_method
from zoology.mixers.hyena_filter import HyenaFilter
from zoology.ops.long_conv import causal_conv_last, causal_toeplitz, fft_causal_conv


class LongBaseConv(nn.Module):
    """y = (h ∗ u + c) ⊙ (W u + b) + u, h (d_model, L) the implicit filter (`HyenaFilter`, defined up to
    max_seq_len; longer sequences raise SequenceTooLong), ∗ the causal long convolution by FFT in float32.

    The long layers of the Zoology paper's BaseConv stack (kernels [3, long, 3, long]: `base_conv` with
    kernel_size 3 and this, cycled over 4 layers). Shapes: u (batch, seq, d_model) -> (batch, seq, d_model).
    State: every input so far, d·t elements after t tokens (none at t = 0), in float32 or wider; `step` is the
    long convolution evaluated at the newest position.
    """

    def __init__(
        self, d_model: int, layer_idx: int = 0, max_seq_len: int = 2048, filter_order: int = 64, filter_emb_dim: int = 3
    ):
        super().__init__()
        self.filter = HyenaFilter(d_model, max_seq_len, filter_order, filter_emb_dim)
        self.d_model, self.layer_idx = d_model, layer_idx
        self.conv_bias = nn.Parameter(torch.zeros(d_model))
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        conv = fft_causal_conv(u.transpose(1, 2), self.filter(u.shape[1])).transpose(1, 2) + self.conv_bias
        return (conv * self.projection(u)).to(u.dtype) + u

    @token_weights_method
    def token_weights(self, u: torch.Tensor) -> torch.Tensor:
        """The gated long convolution as a matrix, one "head" per channel c (batch, d_model, seq, seq):
        W[c, t, s] = (W u_t + b)_c · h_c[t − s] for s ≤ t, plus 1 at s = t (the residual), so that the output is
        W·v + c ⊙ (W u + b) per channel for v = u, the layer input: everything but the gated conv bias c, which
        draws on no earlier token."""
        seq = u.shape[1]
        weights = self.projection(u).transpose(1, 2)[..., None] * causal_toeplitz(self.filter(seq), seq)
        weights.diagonal(dim1=-2, dim2=-1).add_(1.0)
        return weights

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acc = torch.promote_types(u.dtype, torch.float32)
        return self.forward(u), u.transpose(1, 2).to(acc, copy=True)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        acc = torch.promote_types(dtype or self.projection.weight.dtype, torch.float32)
        return torch.zeros(batch_size, self.d_model, 0, device=device, dtype=acc)

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        history = torch.cat([state, u_t[..., None].to(state.dtype)], dim=-1)
        conv = causal_conv_last(history, self.filter(history.shape[-1])) + self.conv_bias
        return (conv * self.projection(u_t)).to(u_t.dtype) + u_t, history

    def state_size(self, seq_len: int) -> int:
        return self.d_model * seq_len
