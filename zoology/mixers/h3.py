"""H3: a shift SSM on the keys, then a diagonal SSM over key–value outer products read out by the queries."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import token_weights_method
from zoology.ops import diagonal_ssm
from zoology.ops.long_conv import causal_toeplitz, fft_causal_conv


def _outer(k: torch.Tensor, v: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per head, k_h v_hᵀ: k, v (batch, d, …) -> (batch, d·head_dim, …), element (h, i, j) = k_{h,i} v_{h,j}."""
    k, v = k.unflatten(1, (-1, head_dim)), v.unflatten(1, (-1, head_dim))
    return (k[:, :, :, None] * v[:, :, None, :]).flatten(1, 3)


def _read(q: torch.Tensor, s: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per head, q_hᵀ S_h: q (batch, d, …), s (batch, d·head_dim, …) -> (batch, d, …)."""
    q, s = q.unflatten(1, (-1, head_dim)), s.unflatten(1, (-1, head_dim, head_dim))
    return (q[:, :, :, None] * s).sum(2).flatten(1, 2)


class H3(nn.Module):
    """q, k, v = W x + b; k'_t = D_k ⊙ k_t + Σ_{j=1..N} c_j ⊙ k_{t−j} (the shift SSM: a learned causal FIR over
    the last N keys); per head of head_dim channels, S_t = SSM(k' vᵀ)_t + D ⊙ k'_t v_tᵀ, each of the
    head_dim² entries through its own diagonal SSM of N states; y_h = q_hᵀ S_h; output W_o y + b_o.

    The diagonal SSM (zoology.ops.diagonal_ssm) has N/2 complex modes per channel, S4D-Lin initialised:
    A_n = −½ + iπn, Δ log-uniform in [dt_min, dt_max], zero-order hold (Ā = exp(ΔA), B̄ = (Ā − 1)/A, B = 1),
    C complex normal. Parallel form: both SSMs as causal FFT convolutions with their materialised kernels;
    recurrent form: the shift register and the SSM recurrence. Everything after the projections is float32
    (float64 for float64 inputs), also under bf16 autocast. Shapes: x (batch, seq, d_model) -> same.
    State: the last N keys (d·N) and the SSM states (d·head_dim channels × N/2 complex = d·head_dim·N
    reals): d·N·(1 + head_dim), 3·d·N at head_dim 2, at every t.
    """

    @staticmethod
    def check_args(d_model, d_state, head_dim, dt_min, dt_max, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state={d_state!r} must be an even integer >= 2 (N/2 complex modes)")
        if not isinstance(head_dim, int) or head_dim < 1 or d_model % head_dim:
            raise ValueError(f"head_dim={head_dim!r} must be an integer >= 1 dividing d_model={d_model}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min={dt_min}, dt_max={dt_max}: need 0 < dt_min <= dt_max")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        d_state: int = 64,
        head_dim: int = 2,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        H3.check_args(d_model=d_model, d_state=d_state, head_dim=head_dim, dt_min=dt_min, dt_max=dt_max)
        self.d_model, self.layer_idx, self.d_state, self.head_dim = d_model, layer_idx, d_state, head_dim
        channels, modes = d_model * head_dim, d_state // 2
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.shift_taps = nn.Parameter(torch.randn(d_model, d_state) / math.sqrt(d_state))
        self.shift_skip = nn.Parameter(torch.randn(d_model))
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.A_real_log = nn.Parameter(torch.full((channels, modes), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).repeat(channels, 1))
        self.C = nn.Parameter(torch.randn(channels, modes, 2) * math.sqrt(0.5))
        self.skip = nn.Parameter(torch.randn(channels))
        for p in (self.log_dt, self.A_real_log, self.A_imag):
            p._no_weight_decay = True

    def _ssm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log Ā = ΔA, B̄ = (Ā − 1)/A and C, complex (d·head_dim, N/2)."""
        A = torch.complex(-torch.exp(self.A_real_log), self.A_imag)
        log_decay = torch.exp(self.log_dt)[:, None] * A
        return log_decay, torch.expm1(log_decay) / A, torch.view_as_complex(self.C)

    def _shift_kernel(self) -> torch.Tensor:
        """[D_k, c_1, …, c_N]: the shift SSM as a causal filter (d_model, N + 1)."""
        return torch.cat([self.shift_skip[:, None], self.shift_taps], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x)[0]

    def _mix(self, x: torch.Tensor):
        """(output, keys (batch, d, seq), kv (batch, d·head_dim, seq), log Ā, B̄), all after the projection in acc."""
        acc = torch.promote_types(x.dtype, torch.float32)
        q, k, v = (t.transpose(1, 2) for t in self.qkv_proj(x).chunk(3, dim=-1))
        with torch.autocast(x.device.type, enabled=False):
            k = k.to(acc)
            kv = _outer(fft_causal_conv(k, self._shift_kernel()), v.to(acc), self.head_dim)
            log_decay, B_bar, C = self._ssm()
            kernel = diagonal_ssm.ssm_kernel(log_decay, C * B_bar, x.shape[1])
            s = fft_causal_conv(kv, kernel) + self.skip[:, None] * kv
            y = _read(q.to(acc), s, self.head_dim)
        return self.out_proj(y.transpose(1, 2).to(x.dtype)), k, kv, log_decay, B_bar

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The layer as a matrix, one "head" per value channel c = (head h, j) (batch, d_model, seq, seq):
        W[c, t, s] = Σ_i q_t[h, i] k'_s[h, i] (K_hij[t − s] + D_hij [s = t]) for s ≤ t, K_hij the diagonal SSM's
        kernel of channel (h, i, j) and k' the shifted keys, so that y = W·v per channel for v = W_v x + b and
        y = q_hᵀ S_h, before W_o."""
        seq = x.shape[1]
        q, k, _ = (t.transpose(1, 2) for t in self.qkv_proj(x).chunk(3, dim=-1))
        shifted = fft_causal_conv(k, self._shift_kernel()).unflatten(1, (-1, self.head_dim))
        q = q.unflatten(1, (-1, self.head_dim))
        log_decay, B_bar, C = self._ssm()
        taps = causal_toeplitz(diagonal_ssm.ssm_kernel(log_decay, C * B_bar, seq), seq)
        taps.diagonal(dim1=-2, dim2=-1).add_(self.skip[:, None])
        taps = taps.view(-1, self.head_dim, self.head_dim, seq, seq)  # (heads, i, j, t, s)
        weights = x.new_zeros(x.shape[0], q.shape[1], self.head_dim, seq, seq)
        for i in range(self.head_dim):
            weights += (q[:, :, i, :, None] * shifted[:, :, i, None, :])[:, :, None] * taps[:, i]
        return weights.flatten(1, 2)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y, k, kv, log_decay, B_bar = self._mix(x)
        with torch.autocast(x.device.type, enabled=False):
            ssm = diagonal_ssm.final_state(kv, log_decay, B_bar)
        shift = F.pad(k, (self.d_state, 0))[..., k.shape[-1] :]
        return y, {"shift": shift.contiguous(), "ssm": torch.view_as_real(ssm)}

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.qkv_proj.weight.dtype, torch.float32)
        channels, modes = self.d_model * self.head_dim, self.d_state // 2
        return {
            "shift": torch.zeros(batch_size, self.d_model, self.d_state, device=device, dtype=acc),
            "ssm": torch.zeros(batch_size, channels, modes, 2, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acc = state["shift"].dtype
        q, k, v = (t.to(acc) for t in self.qkv_proj(x_t).chunk(3, dim=-1))
        with torch.autocast(x_t.device.type, enabled=False):
            k_shifted = self.shift_skip * k + (state["shift"] * self.shift_taps.flip(-1)).sum(-1)
            kv = _outer(k_shifted, v, self.head_dim)
            log_decay, B_bar, C = self._ssm()
            s, ssm = diagonal_ssm.ssm_step(torch.view_as_complex(state["ssm"]), kv, torch.exp(log_decay), B_bar, C)
            y = _read(q, s + self.skip * kv, self.head_dim)
        shift = torch.cat([state["shift"][..., 1:], k[..., None]], dim=-1)
        return self.out_proj(y.to(x_t.dtype)), {"shift": shift, "ssm": torch.view_as_real(ssm)}

    def state_size(self, seq_len: int) -> int:
        return self.d_model * self.d_state * (1 + self.head_dim)
