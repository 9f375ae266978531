"""Feature maps φ: (…, f) -> (…, D) with φ(q)·φ(k) = K(q, k), and the kernels K they stand for.

    Taylor (Based)        K = 1 + s + s²/2, s = q·k/√f     D = 1 + f + f(f+1)/2
    square (ReBased)      K = (q·k/√f)²                     D = f(f+1)/2
    ELU+1 (linear attn)   φ(x) = elu(x) + 1, elementwise    D = f

The Taylor and square maps are compact: each unordered pair i ≤ j appears once, with its weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FeatureMap = Callable[[torch.Tensor], torch.Tensor]
"""φ: (…, f) -> (…, D)."""
Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""K: q (…, lq, f), k (…, lk, f) -> (…, lq, lk), every query against every key."""


def taylor_dim(feature_dim: int) -> int:
    """D = 1 + f + f(f+1)/2, the size of the compact 2nd-order Taylor feature map."""
    return 1 + feature_dim + feature_dim * (feature_dim + 1) // 2


def taylor_kernel(s: torch.Tensor) -> torch.Tensor:
    """exp(s) to second order: 1 + s + s²/2 (always >= 1/2)."""
    return 1 + s + 0.5 * s * s


class TaylorFeatureMap(nn.Module):
    """φ(x) = [1, x/f^{1/4}, x_i²/(√2·√f), x_i·x_j/√f for i<j]: (…, f) -> (…, D).

    φ(q)·φ(k) = 1 + s + s²/2 with s = q·k/√f. A module only so that its 0/1 pair-selection matrices
    are a buffer, made once and moved (and cast) with the layer that owns it.
    """

    def __init__(self, feature_dim: int):
        super().__init__()
        self.feature_dim = feature_dim
        self.dim = taylor_dim(feature_dim)
        diagonal = torch.arange(feature_dim)
        rows, cols = torch.triu_indices(feature_dim, feature_dim, offset=1)
        pairs = torch.arange(self.dim - 1 - feature_dim)
        select = torch.zeros(2, feature_dim, len(pairs))
        select[0, torch.cat([diagonal, rows]), pairs] = 1.0
        select[1, torch.cat([diagonal, cols]), pairs] = 1.0
        self.register_buffer("select", select, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_dim
        select = self.select.to(x.dtype)
        products = (x @ select[0]) * (x @ select[1])
        return torch.cat(
            [
                torch.ones_like(x[..., :1]),
                x / f**0.25,
                products[..., :f] / math.sqrt(2 * f),
                products[..., f:] / math.sqrt(f),
            ],
            dim=-1,
        )


def square_feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = [x_i² / √f, √2·x_i x_j / √f for i<j]: φ(q)·φ(k) = (q·k / √f)², D = f(f+1)/2."""
    f = x.shape[-1]
    i, j = torch.triu_indices(f, f, offset=1, device=x.device)
    return torch.cat([x * x, math.sqrt(2.0) * x[..., i] * x[..., j]], dim=-1) / math.sqrt(f)


def square_kernel(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(q·k / √f)² for every query/key pair: (..., lq, f), (..., lk, f) -> (..., lq, lk)."""
    return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).square()


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1, elementwise and positive."""
    return F.elu(x) + 1
