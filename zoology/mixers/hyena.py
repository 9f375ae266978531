"""Hyena (order 2): a short convolution, then a gated long convolution with an implicit filter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import token_weights_method
from zoology.mixers.hyena_filter import HyenaFilter
from zoology.ops.long_conv import causal_conv_last, causal_toeplitz, fft_causal_conv


class Hyena(nn.Module):
    """[x0; x1; v] = conv_k(W_in x) (causal depthwise, with bias); u = v ⊙ x1; y = W_out(x0 ⊙ (h ∗ u + b ⊙ u)).

    h (d_model, L) is the implicit filter (`HyenaFilter`, defined up to max_seq_len; longer sequences raise
    SequenceTooLong), h ∗ u the causal long convolution by FFT in float32 (also under bf16 autocast).
    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State: the short conv's last k−1 inputs
    (3·d × (k−1)) and every u so far (d × t), d·t + 3·d·(k−1) after t tokens (3·d·(k−1) at t = 0), in float32
    or wider; `step` is the long convolution evaluated at the newest position.
    """

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        max_seq_len: int = 2048,
        short_conv_size: int = 3,
        filter_order: int = 64,
        filter_emb_dim: int = 3,
    ):
        super().__init__()
        if not isinstance(short_conv_size, int) or short_conv_size < 1:
            raise ValueError(f"short_conv_size={short_conv_size!r} must be an integer >= 1")
        self.filter = HyenaFilter(d_model, max_seq_len, filter_order, filter_emb_dim)
        self.d_model, self.layer_idx, self.short_conv_size = d_model, layer_idx, short_conv_size
        width = 3 * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.short_conv = nn.Conv1d(width, width, short_conv_size, groups=width, padding=short_conv_size - 1)
        self.bias = nn.Parameter(torch.randn(d_model))
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x)[0]

    def _mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, W_in x as (batch, 3d, seq), u (batch, d, seq)) for x (batch, seq, d_model)."""
        seq = x.shape[1]
        z = self.in_proj(x).transpose(1, 2)
        x0, x1, v = self.short_conv(z)[..., :seq].split(self.d_model, dim=1)
        u = v * x1
        y = fft_causal_conv(u, self.filter(seq)) + self.bias[:, None] * u
        return self.out_proj((x0 * y).transpose(1, 2).to(x.dtype)), z, u

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The gated long convolution as a matrix, one "head" per channel c (batch, d_model, seq, seq):
        W[c, t, s] = x0_t[c] · (h_c[t − s] + b_c [s = t]) for s ≤ t, so that y = W·v per channel for v = u = v ⊙ x1
        (after the short convolution) and y = x0 ⊙ (h ∗ u + b ⊙ u), before W_out."""
        seq = x.shape[1]
        x0, _, _ = self.short_conv(self.in_proj(x).transpose(1, 2))[..., :seq].split(self.d_model, dim=1)
        taps = causal_toeplitz(self.filter(seq), seq)
        taps.diagonal(dim1=-2, dim2=-1).add_(self.bias[:, None])
        return x0[..., None] * taps

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y, z, u = self._mix(x)
        acc = torch.promote_types(x.dtype, torch.float32)
        conv = F.pad(z, (self.short_conv_size - 1, 0))[..., z.shape[-1] :]
        return y, {"conv": conv.to(acc, copy=True), "u": u.to(acc, copy=True)}

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.in_proj.weight.dtype, torch.float32)
        return {
            "conv": torch.zeros(batch_size, 3 * self.d_model, self.short_conv_size - 1, device=device, dtype=acc),
            "u": torch.zeros(batch_size, self.d_model, 0, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.filter(state["u"].shape[-1] + 1)
        window = torch.cat([state["conv"], self.in_proj(x_t)[..., None].to(state["conv"].dtype)], dim=-1)
        x0, x1, v = ((window * self.short_conv.weight[:, 0]).sum(-1) + self.short_conv.bias).split(self.d_model, -1)
        u_t = v * x1
        history = torch.cat([state["u"], u_t[..., None]], dim=-1)
        y = causal_conv_last(history, h) + self.bias * u_t
        return self.out_proj((x0 * y).to(x_t.dtype)), {"conv": window[..., 1:], "u": history}

    def state_size(self, seq_len: int) -> int:
        return self.d_model * seq_len + 3 * self.d_model * (self.short_conv_size - 1)
