"""Hyena's implicit long filter: h ∈ R^{d×L}, each tap a small sine MLP of positional features, times a decay.

Shared by the layers whose long convolution is implicit (`hyena`, `base_conv_long`); it is a part of a layer,
not a mixer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoology.mixers import SequenceTooLong

FAST_DECAY, SLOW_DECAY, DECAY_TARGET = 0.3, 1.5, 1e-2
"""Channel c's window exp(−α_c t) falls to DECAY_TARGET at t = FAST_DECAY (last channel) … SLOW_DECAY (first),
t the position as a fraction of max_seq_len; α spreads linearly over the channels."""
INNER_LAYERS = 2
"""Hidden order × order layers of the filter MLP, after the first (emb_dim -> order)."""


def check_filter_args(max_seq_len: int, order: int, emb_dim: int) -> None:
    """ValueError naming the kwarg for a filter that cannot be built."""
    for name, value in (("max_seq_len", max_seq_len), ("filter_order", order)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if not isinstance(emb_dim, int) or emb_dim < 1 or emb_dim % 2 == 0:
        raise ValueError(f"filter_emb_dim={emb_dim!r} must be an odd integer >= 1 (position, then cos/sin pairs)")


class HyenaFilter(nn.Module):
    """h_t = (W_out sin(ω₃ ⊙ W₃ sin(ω₂ ⊙ W₂ sin(ω₁ ⊙ W₁ z_t + b₁) + b₂) + b₃)) ⊙ exp(−α t/L), t < L = max_seq_len.

    z_t = [t/L, cos(2πkt/L), sin(2πkt/L) for k = 1 … (emb_dim − 1)/2]; the ω (learnable, init 1) are the sine
    frequencies. `forward(seq_len)` -> h (d_model, seq_len), in the parameters' dtype with autocast off (the
    taps are parameters of a float32 convolution). The MLP keeps PyTorch's default initialisation (the
    model's generic init would shrink it) and gets no weight decay.
    """

    def __init__(self, d_model: int, max_seq_len: int, order: int = 64, emb_dim: int = 3):
        super().__init__()
        check_filter_args(max_seq_len, order, emb_dim)
        self.d_model, self.max_seq_len, self.emb_dim = d_model, max_seq_len, emb_dim
        widths = [emb_dim, *[order] * (INNER_LAYERS + 1)]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.freq = nn.Parameter(torch.ones(len(self.hidden), order))
        self.out = nn.Linear(order, d_model, bias=False)
        decay_range = (math.log(DECAY_TARGET) / SLOW_DECAY, math.log(DECAY_TARGET) / FAST_DECAY)
        self.register_buffer("decay", torch.linspace(*decay_range, d_model).abs(), persistent=False)
        for p in self.parameters():
            p._no_reinit = True
            p._no_weight_decay = True

    def forward(self, seq_len: int) -> torch.Tensor:
        if seq_len > self.max_seq_len:
            raise SequenceTooLong(
                f"a sequence of {seq_len} tokens is longer than the implicit filter: max_seq_len={self.max_seq_len}; "
                f"set the mixer's max_seq_len >= {seq_len}"
            )
        weight = self.out.weight
        with torch.autocast(weight.device.type, enabled=False):
            t = torch.arange(seq_len, device=weight.device, dtype=weight.dtype) / self.max_seq_len
            bands = torch.arange(1, (self.emb_dim - 1) // 2 + 1, device=weight.device, dtype=weight.dtype)
            angle = 2 * math.pi * t[:, None] * bands
            z = torch.cat([t[:, None], torch.cos(angle), torch.sin(angle)], dim=-1)
            for layer, freq in zip(self.hidden, self.freq):
                z = torch.sin(freq * layer(z))
            return (self.out(z) * torch.exp(-t[:, None] * self.decay.to(weight.dtype))).T
