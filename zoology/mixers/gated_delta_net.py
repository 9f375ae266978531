"""Gated DeltaNet: the delta rule with a data-dependent decay per head (Yang, Kautz and Hatamizadeh, 2025)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers.delta_net import DeltaNet

A_INIT_RANGE = (0.0, 16.0)
DT_INIT_RANGE = (1e-3, 1e-1)


class GatedDeltaNet(DeltaNet):
    """DeltaNet with S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, α_t = exp(g_t) and
    g_t = −exp(A_log) · softplus(W_a x_t + b_dt) per head (A ~ U(0, 16); dt log-uniform in [1e-3, 0.1],
    b_dt its inverse softplus; A_log and b_dt neither decay nor are re-initialised by the model).

    Shapes, state and views as DeltaNet's (V = expand_v · d_model / H, 2 by default): S (H·K·V) plus the
    conv's last conv_size − 1 inputs. On CUDA the parallel form is fla-core's chunk_gated_delta_rule where fla
    runs it; fla refuses it on Hopper with Triton < 3.7.1 (a wrong backward), and "auto" then runs the chunked
    PyTorch path, which the training step compiles with the model.
    """

    gated = True

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 2,
        expand_v: float = 2.0,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__(d_model, layer_idx, num_heads, expand_v, conv_size, norm_eps, chunk_size, backend)
        self.decay_proj = nn.Linear(d_model, num_heads, bias=False)
        A = torch.empty(num_heads).uniform_(*A_INIT_RANGE).clamp_min(1e-4)
        low, high = (math.log(v) for v in DT_INIT_RANGE)
        dt = torch.exp(torch.rand(num_heads) * (high - low) + low)
        self.A_log = nn.Parameter(torch.log(A))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        for p in (self.A_log, self.dt_bias):
            p._no_reinit = True
            p._no_weight_decay = True

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        acc = torch.promote_types(x.dtype, torch.float32)
        raw = self.decay_proj(x).to(acc) + self.dt_bias.to(acc)
        return -torch.exp(self.A_log.to(acc)) * F.softplus(raw)
