"""The causal depthwise convolution over time-major x: y_t = b + Σ_k w_k ⊙ x_{t−(K−1)+k}, zeros before t = 0.

x (seq, batch, d), w (d, K), b (d) -> y (seq, batch, d). `causal_depthwise_conv` is K shifted multiply-adds
with their own backward (no padded copy, no layout change); `reference_causal_conv` is torch's conv1d with
left padding, the reference it is tested against. The recurrent form: `conv_window` is the state after a
sequence (its last K−1 inputs), `conv_step` one position from that state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _CausalDepthwiseConv(torch.autograd.Function):
    """y_t = b + Σ_k w_k ⊙ x_{t−(K−1)+k} over time-major x (seq, batch, d) with w (d, K), zeros before t = 0."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        seq, K = x.shape[0], weight.shape[1]
        y = torch.addcmul(bias, x, weight[:, K - 1])
        for shift in range(1, min(K, seq)):
            y[shift:].addcmul_(x[: seq - shift], weight[:, K - 1 - shift])
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        seq, K = x.shape[0], weight.shape[1]
        grad_x = grad_y * weight[:, K - 1]
        grad_weight = torch.zeros_like(weight)
        grad_weight[:, K - 1] = (grad_y * x).sum((0, 1))
        for shift in range(1, min(K, seq)):
            grad_x[: seq - shift].addcmul_(grad_y[shift:], weight[:, K - 1 - shift])
            grad_weight[:, K - 1 - shift] = (grad_y[shift:] * x[: seq - shift]).sum((0, 1))
        return grad_x.to(x.dtype), grad_weight, grad_y.sum((0, 1))


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """y (seq, batch, d) from x (seq, batch, d), weight (d, K), bias (d)."""
    return _CausalDepthwiseConv.apply(x, weight, bias)


def reference_causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The same convolution as F.conv1d (channels first, K − 1 zeros padded on the left)."""
    seq, K = x.shape[0], weight.shape[1]
    y = F.conv1d(x.permute(1, 2, 0), weight[:, None], bias, padding=K - 1, groups=weight.shape[0])[..., :seq]
    return y.permute(2, 0, 1)


def conv_window(x: torch.Tensor, size: int) -> torch.Tensor:
    """The last `size` inputs of time-major x (seq, batch, d) as (batch, d, size), zeros before t = 0."""
    return F.pad(x, (0, 0, 0, 0, size, 0))[x.shape[0] :].permute(1, 2, 0)


def conv_step(
    window: torch.Tensor, x_t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One position of the convolution: y_t (batch, d) from the previous K−1 inputs `window` (batch, d, K−1)
    and x_t (batch, d), in the window's dtype, and the next window."""
    full = torch.cat([window, x_t[..., None].to(window.dtype)], dim=-1)
    return (full * weight).sum(-1) + bias, full[..., 1:]
