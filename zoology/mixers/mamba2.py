"""Mamba-2: the SSD state-space block with one scalar decay per head (Dao and Gu, 2024)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import state_numel, token_weights_method
from zoology.ops import dplr, fla_support
from zoology.ops.causal_conv import causal_depthwise_conv, conv_step, conv_window
from zoology.ops.dplr import fla
from zoology.ops.norms import rms_norm


class Mamba2(nn.Module):
    """[z; xBC; dt] = W_in u; [x; B; C] = SiLU(conv_k(xBC) + b); Δ = softplus(dt + b_dt) and A_h = −exp(A_log_h)
    per head; per head h (head_dim P channels of x): h_t = exp(Δ_t A_h) h_{t−1} + Δ_t B_t x_tᵀ (N × P),
    y_t = h_tᵀ C_t + D_h x_t; out = W_out (RMSNorm(y ⊙ SiLU(z)) ⊙ w).

    d_inner = expand · d_model, H = d_inner / head_dim (head_dim min(64, d_inner) by default), N = d_state;
    B and C are shared by the heads (one group). A_log (A ~ U(1, 16)), D (ones) and b_dt (dt log-uniform in
    [dt_min, dt_max], inverse softplus) neither decay nor are re-initialised by the model.
    Shapes: u (batch, seq, d_model) -> (batch, seq, d_model). State: the conv's last d_conv − 1 inputs
    ((d_inner + 2N)·(d_conv − 1)) and h (d_inner·N) per sequence, in float32 (float64 for float64 inputs).
    The parallel form is `dplr.chunked_dplr` with q = C, k = B, v = Δ ⊙ x, one log-decay Δ·A per head and
    scale 1 (gated linear attention with a per-head gate); on CUDA
    fla-core's chunk_simple_gla, or where fla refuses that kernel (Hopper with Triton < 3.7.1) chunk_gla with
    the head's gate on every key channel (`backend`).
    """

    @staticmethod
    def check_args(
        d_model, d_state, d_conv, expand, head_dim, dt_min, dt_max, dt_init_floor, norm_eps, chunk_size, **_
    ) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        for name, value in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        head_dim = min(64, expand * d_model) if head_dim is None else head_dim
        if not isinstance(head_dim, int) or head_dim < 1 or (expand * d_model) % head_dim:
            raise ValueError(
                f"head_dim={head_dim!r} must be None (64) or an integer >= 1 that divides d_inner = expand·d_model "
                f"= {expand * d_model}"
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min={dt_min}, dt_max={dt_max}: need 0 < dt_min <= dt_max")
        if not dt_init_floor > 0 or not norm_eps > 0:
            raise ValueError(f"dt_init_floor={dt_init_floor} and norm_eps={norm_eps} must be > 0")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} must be None (automatic) or an integer >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        Mamba2.check_args(
            d_model=d_model,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            head_dim=head_dim,
            dt_min=dt_min,
            dt_max=dt_max,
            dt_init_floor=dt_init_floor,
            norm_eps=norm_eps,
            chunk_size=chunk_size,
        )
        head_dim = min(64, expand * d_model) if head_dim is None else head_dim
        fla_support.check_backend(backend, {"d_state": d_state, "head_dim": head_dim})
        self.d_model, self.layer_idx = d_model, layer_idx
        self.d_inner, self.d_state, self.d_conv, self.head_dim = expand * d_model, d_state, d_conv, head_dim
        self.num_heads = self.d_inner // head_dim
        self.norm_eps, self.chunk_size, self.backend = norm_eps, chunk_size, backend
        conv_channels = self.d_inner + 2 * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + conv_channels + self.num_heads, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(conv_channels, d_conv))
        self.conv_bias = nn.Parameter(torch.empty(conv_channels))
        # nn.Conv1d's initialisation of a depthwise conv (fan_in = d_conv).
        nn.init.kaiming_uniform_(self.conv_weight, a=math.sqrt(5))
        nn.init.uniform_(self.conv_bias, -1 / math.sqrt(d_conv), 1 / math.sqrt(d_conv))
        dt = torch.exp(torch.rand(self.num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.num_heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_reinit = True
            p._no_weight_decay = True
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _split(self, zxbcdt: torch.Tensor):
        return zxbcdt.split([self.d_inner, self.d_inner + 2 * self.d_state, self.num_heads], dim=-1)

    def _ssm(self, xBC: torch.Tensor, dt: torch.Tensor):
        """Conv outputs (…, d_inner + 2N) and dt (…, H) -> x (…, H, P), B, C (…, N), Δ and log-decay Δ·A (…, H),
        in the accumulator dtype."""
        acc = torch.promote_types(xBC.dtype, torch.float32)
        x, B, C = F.silu(xBC.to(acc)).split([self.d_inner, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(dt.to(acc) + self.dt_bias.to(acc))
        return x.unflatten(-1, (self.num_heads, self.head_dim)), B, C, delta, -torch.exp(self.A_log.to(acc)) * delta

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """SSM outputs y and inputs x (…, H, P), gate z (…, d_inner) -> W_out RMSNorm((y + D x) ⊙ SiLU(z))."""
        y = (y + self.D.to(y.dtype)[:, None] * x).flatten(-2) * F.silu(z.to(y.dtype))
        return self.out_proj(rms_norm(y, self.norm_weight, self.norm_eps).to(dtype))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._parallel(u, final_state=False)[0]

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._parallel(u, final_state=True)

    def _parallel(self, u: torch.Tensor, final_state: bool):
        z, xBC_in, dt = self._split(self.in_proj(u))
        xBC_in = xBC_in.transpose(0, 1)
        xBC = causal_depthwise_conv(xBC_in, self.conv_weight, self.conv_bias).transpose(0, 1)
        x, B, C, delta, g = self._ssm(xBC, dt)
        heads = (*x.shape[:3], self.d_state)
        q, k, v = C[:, :, None].expand(heads), B[:, :, None].expand(heads), x * delta[..., None]
        if not fla_support.use_fla(self.backend, u, {"d_state": self.d_state, "head_dim": self.head_dim}):
            y, S = dplr.chunked_dplr(q, k, v, g[..., None], None, None, 1.0, self.chunk_size)
        else:
            q, k, v = (t.to(xBC_in.dtype) for t in (q, k, v))
            if fla_support.gated_backward_refused():
                y, S = fla.gla(q, k, v, g[..., None], 1.0, final_state)
            else:
                y, S = fla.simple_gla(q, k, v, g, 1.0, final_state)
            y = y.to(x.dtype)
        out = self._output(y, x, z, u.dtype)
        if not final_state:
            return out, None
        return out, {"conv": conv_window(xBC_in, self.d_conv - 1).to(S.dtype), "ssm": S}

    @token_weights_method
    def token_weights(self, u: torch.Tensor) -> torch.Tensor:
        """The SSD kernel per head (batch, H, seq, seq): W[t, s] = (C_t·B_s) e^{Σ_{s<r≤t} Δ_r A_h} Δ_s for s ≤ t, plus
        D_h at s = t, so that y = W·v per head for v = x (the head's P channels of SiLU(conv(xBC))) and y = h_tᵀ C_t
        + D_h x_t, before the SiLU(z) gate, the RMSNorm and W_out. From `dplr.token_weights` (the chunked form)."""
        _, xBC_in, dt = self._split(self.in_proj(u))
        xBC = causal_depthwise_conv(xBC_in.transpose(0, 1), self.conv_weight, self.conv_bias).transpose(0, 1)
        x, B, C, delta, g = self._ssm(xBC, dt)
        heads = (*x.shape[:3], self.d_state)
        q, k = C[:, :, None].expand(heads), B[:, :, None].expand(heads)
        kernel = dplr.token_weights(q, k, g[..., None], scale=1.0, chunk_size=self.chunk_size)
        weights = kernel * delta.transpose(1, 2)[:, :, None, :]
        weights.diagonal(dim1=-2, dim2=-1).add_(self.D.to(weights.dtype)[:, None])
        return weights

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.in_proj.weight.dtype, torch.float32)
        channels, h = self.conv_weight.shape[0], self.num_heads
        return {
            "conv": torch.zeros(batch_size, channels, self.d_conv - 1, device=device, dtype=acc),
            "ssm": torch.zeros(batch_size, h, self.d_state, self.head_dim, device=device, dtype=acc),
        }

    def step(self, u_t: torch.Tensor, state: dict[str, torch.Tensor]):
        z, xBC, dt = self._split(self.in_proj(u_t))
        xBC, window = conv_step(state["conv"], xBC, self.conv_weight, self.conv_bias)
        x, B, C, delta, g = self._ssm(xBC, dt)
        heads = (*x.shape[:2], self.d_state)
        with torch.autocast(u_t.device.type, enabled=False):
            y, S = dplr.dplr_step(
                C[:, None].expand(heads), B[:, None].expand(heads), x * delta[..., None], g[..., None], None, None, 1.0,
                state["ssm"],
            )  # fmt: skip
        return self._output(y, x, z, u_t.dtype), {"conv": window, "ssm": S}

    def state_size(self, seq_len: int) -> int:
        return state_numel(self.init_state(1, device="meta"))
