"""The selective scan in PyTorch, over chunks of the sequence (the training path on the CPU, and for float64).

Within a chunk the linear recurrence h_t = a_t h_{t−1} + u_t, a_t = exp(δ_t A), u_t = δ_t B_t x_t, is a
log-depth odd/even reduction that only ever multiplies decays (never divides by a cumulative product, so
nothing overflows); chunks run in order, carrying the state. The backward pass recomputes each chunk from
the state saved at its start and solves the adjoint recurrence backwards, so memory holds one chunk's
states, not the sequence's. Time-major tensors (chunks are contiguous slices); states are laid out
(T, batch, N, d_in); everything runs in the inputs' dtype with autocast off.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable


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


def chunked_scan(x, delta, A, B, C, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, h_last) of the selective scan, chunk_size positions per chunk (None: automatic); shapes as in
    `reference_scan`. h_last carries no gradient."""
    return _SelectiveScan.apply(x, delta, A, B, C, chunk_size)
