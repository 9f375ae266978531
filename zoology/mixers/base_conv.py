"""BaseConv: a short causal depthwise convolution gated by a linear map, with internal residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import NoTokenWeights


class BaseConv(nn.Module):
    """y = conv_k(u) ⊙ (W u + b) + u, conv_k causal depthwise over time with bias.

    Shapes: u (batch, seq, d_model) -> (batch, seq, d_model). State: the last k−1 inputs,
    d_model·(k−1) elements per sequence (zeros before the first token), in float32 or wider.
    """

    def __init__(self, d_model: int, layer_idx: int = 0, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size={kernel_size} must be >= 1")
        self.d_model, self.layer_idx, self.kernel_size = d_model, layer_idx, kernel_size
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, padding=kernel_size - 1)
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        conv = self.conv(u.transpose(1, 2))[..., : u.shape[1]].transpose(1, 2)
        return conv * self.projection(u) + u

    def token_weights(self, u: torch.Tensor) -> torch.Tensor:
        """None to read: raises NoTokenWeights. The layer mixes tokens only through its k convolution taps
        (`conv.weight`, (d_model, 1, k): one weight per channel and lag 0 … k − 1, the same at every position),
        gated by a linear map of each token."""
        raise NoTokenWeights(
            f"base_conv (layer {self.layer_idx}) has no token-to-token weights: it mixes each token with the "
            f"{self.kernel_size - 1} before it through its {self.kernel_size} convolution taps (conv.weight, one per "
            "channel and lag, the same at every position); look at the taps, or at a layer with weights"
        )

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        history = F.pad(u.transpose(1, 2), (self.kernel_size - 1, 0))
        history = history[..., history.shape[-1] - (self.kernel_size - 1) :]
        return self.forward(u), history.to(torch.promote_types(u.dtype, torch.float32), copy=True)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        return torch.zeros(batch_size, self.d_model, self.kernel_size - 1, device=device, dtype=acc)

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([state, u_t[..., None].to(state.dtype)], dim=-1)
        conv = ((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias).to(u_t.dtype)
        return conv * self.projection(u_t) + u_t, window[..., 1:]

    def state_size(self, seq_len: int) -> int:
        return self.d_model * (self.kernel_size - 1)
