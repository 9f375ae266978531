"""Mamba-lite: a Mamba-1 selective state-space block in pure PyTorch.

The conv is `zoology.ops.causal_conv`; the selective scan is `zoology.ops.selective_scan` (a chunked PyTorch
scan with its own backward, or on CUDA with triton installed two Triton kernels). Tensors are time-major
inside the block, so the scan's chunks are contiguous slices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import token_weights_method
from zoology.ops.causal_conv import causal_depthwise_conv, conv_step, conv_window
from zoology.ops.selective_scan import scan_weights, selective_scan


class Mamba(nn.Module):
    """Mamba-1 block: [x; z] = W_in u; x ← SiLU(conv_k(x) + b); [δ_raw; B; C] = W_x x;
    δ = softplus(W_dt δ_raw + b_dt); A = −exp(A_log); h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t;
    y = C_t·h_t + D ⊙ x_t; out = W_out(y ⊙ SiLU(z)).

    Shapes: u (batch, seq, d_model) -> (batch, seq, d_model); d_in = expand·d_model, N = d_state.
    State: the last d_conv−1 conv inputs (d_in × (d_conv−1)) and h (d_in × N) per sequence.
    """

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        chunk_size: int | None = None,
    ):
        super().__init__()
        for name, value in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} must be None (automatic) or an integer >= 1")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank={dt_rank!r} must be 'auto' or an integer >= 1")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min={dt_min}, dt_max={dt_max}: need 0 < dt_min <= dt_max")
        if dt_init_floor <= 0:
            raise ValueError(f"dt_init_floor={dt_init_floor} must be > 0")
        self.d_model, self.layer_idx = d_model, layer_idx
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = expand * d_model, d_state, d_conv, dt_rank
        self.chunk_size = chunk_size
        d_in = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_in, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(d_in, d_conv))
        self.conv_bias = nn.Parameter(torch.empty(d_in))
        # nn.Conv1d's initialisation of a depthwise conv (fan_in = d_conv), drawn in its order.
        nn.init.kaiming_uniform_(self.conv_weight, a=math.sqrt(5))
        nn.init.uniform_(self.conv_bias, -1 / math.sqrt(d_conv), 1 / math.sqrt(d_conv))
        self.x_proj = nn.Linear(d_in, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_in, bias=False)
        self.out_proj = nn.Linear(d_in, d_model, bias=False)

        nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
        self.dt_proj.weight._no_reinit = True
        dt = torch.exp(torch.rand(d_in) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_in, 1))
        self.D = nn.Parameter(torch.ones(d_in))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_reinit = True
            p._no_weight_decay = True

    def _apply(self, fn, recurse=True):
        """Module dtype casts leave A_log, D and dt_bias in float32 (float64 stays float64)."""
        kept = {name: getattr(self, name).data for name in ("A_log", "D", "dt_bias")}
        super()._apply(fn, recurse)
        for name, old in kept.items():
            p = getattr(self, name)
            if p.dtype not in (torch.float32, torch.float64):
                p.data = old.to(device=p.device, dtype=torch.float32)
        return self

    def _ssm_inputs(self, x: torch.Tensor):
        """From conv outputs x (…, d_in): δ, A, B, C, D in the accumulator dtype."""
        acc = torch.promote_types(x.dtype, torch.float32)
        dt_raw, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(F.linear(dt_raw, self.dt_proj.weight).to(acc) + self.dt_bias.to(acc))
        A = -torch.exp(self.A_log.to(acc))
        return delta, A, B.to(acc), C.to(acc), self.D.to(acc)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.prefill(u)[0]

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_in, z = self.in_proj(u.transpose(0, 1)).chunk(2, dim=-1)
        x = F.silu(causal_depthwise_conv(x_in, self.conv_weight, self.conv_bias))
        delta, A, B, C, D = self._ssm_inputs(x)
        xa = x.to(delta.dtype)
        y, h = selective_scan(xa, delta, A, B, C, self.chunk_size)
        y = y + D * xa
        out = self.out_proj((y * F.silu(z.to(y.dtype))).to(z.dtype)).transpose(0, 1)
        return out, {"conv": conv_window(x_in, self.d_conv - 1).to(h.dtype), "ssm": h}

    @token_weights_method
    def token_weights(self, u: torch.Tensor) -> torch.Tensor:
        """The selective scan materialised, one "head" per inner channel c (batch, d_in, seq, seq):
        W[c, t, s] = Σ_n C_t[n] B_s[n] δ_s[c] exp(Σ_{s<r≤t} δ_r[c] A[c, n]) for s ≤ t, plus D_c at s = t, so that
        y = W·v per channel for v = x, the SiLU(conv) output, and y = C_t·h_t + D ⊙ x_t, the scan's output before
        the SiLU(z) gate and W_out."""
        x_in, _ = self.in_proj(u.transpose(0, 1)).chunk(2, dim=-1)
        x = F.silu(causal_depthwise_conv(x_in, self.conv_weight, self.conv_bias))
        delta, A, B, C, D = self._ssm_inputs(x)
        weights = scan_weights(delta, A, B, C)
        weights.diagonal(dim1=-2, dim2=-1).add_(D[:, None])
        return weights

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.in_proj.weight.dtype, torch.float32)
        return {
            "conv": torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=acc),
            "ssm": torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=acc),
        }

    def step(self, u_t: torch.Tensor, state: dict[str, torch.Tensor]):
        x, z = self.in_proj(u_t).chunk(2, dim=-1)
        x, window = conv_step(state["conv"], x, self.conv_weight, self.conv_bias)
        x = F.silu(x).to(u_t.dtype)
        delta, A, B, C, D = self._ssm_inputs(x)
        xa = x.to(delta.dtype)
        h = torch.exp(delta[..., None] * A) * state["ssm"] + (delta * xa)[..., None] * B[:, None, :]
        y = (h * C[:, None, :]).sum(-1) + D * xa
        out = self.out_proj((y * F.silu(z.to(y.dtype))).to(z.dtype))
        return out, {"conv": window, "ssm": h}

    def state_size(self, seq_len: int) -> int:
        return self.d_inner * (self.d_state + self.d_conv - 1)
