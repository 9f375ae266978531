"""Mamba-lite: a Mamba-1 selective state-space block in pure PyTorch.

The selective scan h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t, y_t = C_t·h_t runs over chunks of the
sequence; inside a chunk it is a log-depth odd/even reduction of the linear recurrence, which only
ever multiplies decays (never divides by a cumulative product, so nothing overflows). Its backward
recomputes each chunk from the state saved at the chunk's start, so training memory holds one chunk's
states, not the sequence's. Tensors are time-major inside the block: chunks are contiguous slices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def reference_scan(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The selective scan as a plain loop over positions (the reference for tests): (y, h_last).

    x, delta (seq, batch, d_in); A (d_in, N); B, C (seq, batch, N) -> y (seq, batch, d_in), h (batch, d_in, N).
    """
    h = x.new_zeros(x.shape[1], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[0]):
        h = torch.exp(delta[t, :, :, None] * A) * h + (delta[t] * x[t])[..., None] * B[t, :, None, :]
        ys.append((h * C[t, :, None, :]).sum(-1))
    return torch.stack(ys), h


def _linear_scan_(a: torch.Tensor, u: torch.Tensor, reverse: bool = False) -> None:
    """Solve h_t = a_t h_{t−1} + u_t along dim 0 in place of u (h_{−1} = 0); reverse: h_t = a_t h_{t+1} + u_t.

    Neighbours are combined pairwise into the odd (even, reverse) positions, that half-length recurrence
    is solved recursively, and the other half filled in from it: O(T) work, log2(T) depth.
    """
    T = u.shape[0]
    if T == 1:
        return
    if reverse:
        dst, src = slice(T % 2, T - 1, 2), slice(T % 2 + 1, T, 2)
        rest, rest_from = slice((T - 1) % 2, T - 1, 2), slice((T - 1) % 2 + 1, T, 2)
    else:
        dst, src = slice(1, T - T % 2, 2), slice(0, T - T % 2, 2)
        rest, rest_from = slice(2, T, 2), slice(1, T - 1, 2)
    u[dst].addcmul_(a[dst], u[src])
    if T > 3:
        _linear_scan_(a[dst] * a[src], u[dst], reverse)
    u[rest].addcmul_(a[rest], u[rest_from])


def _chunk_size(chunk_size: int | None, x: torch.Tensor, d_state: int) -> int:
    """Positions per chunk: as given, or about 2^20 state elements (cache-sized) on the CPU and 2^27
    on accelerators, at least 8 positions."""
    if chunk_size is None:
        budget = 2**20 if x.device.type == "cpu" else 2**27
        chunk_size = max(8, budget // (x.shape[1] * x.shape[2] * d_state))
    return max(1, min(chunk_size, x.shape[0]))


class _Workspace:
    """Reusable (T, batch, N, d_in) buffers, one per name, contiguous for any T up to chunk + 1."""

    def __init__(self, like: torch.Tensor, chunk: int, d_state: int):
        _, batch, d_in = like.shape
        self.like, self.numel, self.tail = like, (chunk + 1) * batch * d_state * d_in, (batch, d_state, d_in)
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, T: int) -> torch.Tensor:
        if name not in self.buffers:
            self.buffers[name] = self.like.new_empty(self.numel)
        return self.buffers[name][: T * math.prod(self.tail)].view(T, *self.tail)


def _chunk_states(decay, h, delta, delta_x, A2_T, B, h_start) -> None:
    """Fill decay = exp(δA) = 2^(δ·A log2 e) and the states h of one chunk, (T, batch, N, d_in), from
    h_start; A2_T = (A log2 e)ᵀ (exp2 is the cheaper instruction), delta_x = δ ⊙ x."""
    torch.mul(delta[:, :, None, :], A2_T, out=decay).exp2_()
    torch.mul(B[..., None], delta_x[:, :, None, :], out=h)
    h[0].addcmul_(decay[0], h_start)
    _linear_scan_(decay, h)


def _rowvec_times(v: torch.Tensor, m: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[t, b] = v[t, b] @ m[t, b] for v (T, batch, k) and m (T, batch, k, j), as one batched matmul."""
    T, batch, k = v.shape
    return torch.bmm(v.reshape(T * batch, 1, k), m.reshape(T * batch, k, -1), out=out.view(T * batch, 1, -1))


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan on time-major tensors; states are laid out (T, batch, N, d_in)."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, chunk_size):
        seq, batch, d_in = x.shape
        N = A.shape[1]
        T = _chunk_size(chunk_size, x, N)
        n_chunks = -(-seq // T)
        keep = any(ctx.needs_input_grad[:5])
        with torch.autocast(x.device.type, enabled=False):
            x, delta, B, C = (t.contiguous() for t in (x, delta, B, C))
            delta_x = delta * x
            A2_T = A.T.contiguous() * math.log2(math.e)
            work = _Workspace(x, T, N)
            starts = x.new_empty(n_chunks if keep else 1, batch, N, d_in)
            starts[0].zero_()
            y = x.new_empty(seq, batch, d_in)
            for i, t0 in enumerate(range(0, seq, T)):
                t1 = min(t0 + T, seq)
                decay, h = work("decay", t1 - t0), work("h", t1 - t0)
                _chunk_states(decay, h, delta[t0:t1], delta_x[t0:t1], A2_T, B[t0:t1], starts[i if keep else 0])
                _rowvec_times(C[t0:t1], h, out=y[t0:t1])
                if keep and i + 1 < n_chunks:
                    starts[i + 1].copy_(h[-1])
                elif not keep:
                    starts[0].copy_(h[-1])
            h_last = h[-1].transpose(1, 2).clone()
        ctx.chunk_size = T
        ctx.save_for_backward(x, delta, A, B, C, starts)
        ctx.mark_non_differentiable(h_last)
        return y, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h_last):
        x, delta, A, B, C, starts = ctx.saved_tensors
        T, (seq, batch, d_in), N = ctx.chunk_size, x.shape, A.shape[1]
        grad_delta_x, grad_delta = torch.empty_like(x), torch.empty_like(delta)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        with torch.autocast(x.device.type, enabled=False):
            grad_y = grad_y.contiguous()
            delta_x = delta * x
            A_T = A.T.contiguous()
            A2_T = A_T * math.log2(math.e)
            grad_A_T = torch.zeros_like(A_T)
            work = _Workspace(x, T, N)
            carry = x.new_zeros(batch, N, d_in)
            for i, t0 in reversed(list(enumerate(range(0, seq, T)))):
                t1 = min(t0 + T, seq)
                n = t1 - t0
                dc, dxc, gy = delta[t0:t1], delta_x[t0:t1], grad_y[t0:t1]
                decay, h, q = work("decay", n + 1), work("h", n), work("q", n + 1)
                _chunk_states(decay[:n], h, dc, dxc, A2_T, B[t0:t1], starts[i])
                _rowvec_times(gy, h.transpose(2, 3), out=grad_C[t0:t1])
                # With G_t = dL/dh_t = a_{t+1} G_{t+1} + C_t dy_t, Q_t = a_t G_t solves
                # Q_t = a_t (Q_{t+1} + C_t dy_t) backwards from Q_n, the next chunk's Q_0 (the carry);
                # then G_t = Q_{t+1} + C_t dy_t, whose C_t dy_t part is added after the loop.
                torch.mul(C[t0:t1, :, :, None], gy[:, :, None, :], out=q[:n]).mul_(decay[:n])
                q[n] = carry
                decay[n] = 0
                _linear_scan_(decay, q, reverse=True)
                carry.copy_(q[0])
                _rowvec_times(dxc, q[1:].transpose(2, 3), out=grad_B[t0:t1])
                _rowvec_times(B[t0:t1], q[1:], out=grad_delta_x[t0:t1])
                grad_log_decay = decay[:n]
                torch.mul(q[1:n], h[: n - 1], out=grad_log_decay[1:])
                torch.mul(q[0], starts[i], out=grad_log_decay[0])
                torch.sum(torch.mul(grad_log_decay, A_T, out=h), -2, out=grad_delta[t0:t1])
                grad_A_T += grad_log_decay.mul_(dc[:, :, None, :]).sum((0, 1))
            grad_B.addcmul_(C, (grad_y * delta_x).sum(-1, keepdim=True))
            grad_delta_x.addcmul_(grad_y, (C * B).sum(-1, keepdim=True))
            grad_delta.addcmul_(grad_delta_x, x)
        return grad_delta_x.mul_(delta), grad_delta, grad_A_T.T, grad_B, grad_C, None


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


def selective_scan(x, delta, A, B, C, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t·h_t with h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t, h_{−1} = 0: (y, h_last).

    Time-major: x, delta (seq, batch, d_in); A (d_in, N); B, C (seq, batch, N); all in one float dtype
    (the accumulator's) -> y (seq, batch, d_in), h_last (batch, d_in, N). h_last carries no gradient.
    """
    return _SelectiveScan.apply(x, delta, A, B, C, chunk_size)


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
        self.conv = nn.Conv1d(d_in, d_in, d_conv, groups=d_in, padding=d_conv - 1)
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
        x = F.silu(_CausalDepthwiseConv.apply(x_in, self.conv.weight[:, 0], self.conv.bias))
        delta, A, B, C, D = self._ssm_inputs(x)
        xa = x.to(delta.dtype)
        y, h = selective_scan(xa, delta, A, B, C, self.chunk_size)
        y = y + D * xa
        out = self.out_proj((y * F.silu(z.to(y.dtype))).to(z.dtype)).transpose(0, 1)
        history = F.pad(x_in, (0, 0, 0, 0, self.d_conv - 1, 0))[x_in.shape[0] :].permute(1, 2, 0)
        return out, {"conv": history.to(h.dtype), "ssm": h}

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.in_proj.weight.dtype, torch.float32)
        return {
            "conv": torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=acc),
            "ssm": torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=acc),
        }

    def step(self, u_t: torch.Tensor, state: dict[str, torch.Tensor]):
        x, z = self.in_proj(u_t).chunk(2, dim=-1)
        window = torch.cat([state["conv"], x[..., None].to(state["conv"].dtype)], dim=-1)
        x = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias).to(u_t.dtype)
        delta, A, B, C, D = self._ssm_inputs(x)
        xa = x.to(delta.dtype)
        h = torch.exp(delta[..., None] * A) * state["ssm"] + (delta * xa)[..., None] * B[:, None, :]
        y = (h * C[:, None, :]).sum(-1) + D * xa
        out = self.out_proj((y * F.silu(z.to(y.dtype))).to(z.dtype))
        return out, {"conv": window[..., 1:], "ssm": h}

    def state_size(self, seq_len: int) -> int:
        return self.d_inner * (self.d_state + self.d_conv - 1)
