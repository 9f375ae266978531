"""Normalisations over the last dimension that the newer mixers apply to their outputs, computed in float32
(float64 for float64 inputs) also under autocast; results in that accumulator dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x²) + ε) ⊙ weight over the last dimension (weight's size)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    x = x.to(acc)
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight.to(acc)


def head_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm of each head of x (…, H, d_h) over d_h, then the affine map of weight, bias (H·d_h) (a
    GroupNorm with one group per head)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        y = F.layer_norm(x.to(acc), x.shape[-1:], eps=eps)
    return y * weight.to(acc).view(x.shape[-2:]) + bias.to(acc).view(x.shape[-2:])
