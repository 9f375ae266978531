"""The selective scan as two Triton kernels, forward and backward (the training path on CUDA).

Each program (sequence b, block of BLOCK_D channels) walks the sequence once with its (BLOCK_D × N) state
in float32 registers, N padded to a power of two. The forward keeps the state every _TRITON_CHUNK
positions; the backward walks back chunk by chunk, recomputing a chunk's states from the one kept, and
carries g_t = dL/dh_t. dA, dB, dC are summed from per-program partials (deterministic, no atomics).
Compiled on CUDA tensors; in triton's interpreter on CPU tensors under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from zoology.ops.triton_support import jit, tl, triton


@jit
def _scan_forward_kernel(
    x_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    y_ptr,
    states_ptr,
    seq,
    batch,
    d_in,
    N,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    N_PAD: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Program (b, j): sequence b, channels d = j·BLOCK_D + (0 … BLOCK_D−1), h (BLOCK_D, N_PAD) in float32 over
    t = 0 … seq−1: h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t x_t B_t, y_t = h_t C_t.
    states (⌈seq/CHUNK⌉ + 1, batch, d_in, N): states[c] = h_{c·CHUNK−1} (h_{−1} = 0), states[−1] = h_last.
    """
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_PAD)
    d_ok, n_ok = d < d_in, n < N
    dn_ok = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
    x_stride, B_stride = tl.cast(batch, tl.int64) * d_in, tl.cast(batch, tl.int64) * N
    x_offset, B_offset = b * d_in + d, b * N + n
    state_offset = x_offset[:, None] * N + n[None, :]
    h = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    for t in tl.range(seq, num_stages=STAGES):
        if t % CHUNK == 0:
            tl.store(states_ptr + (t // CHUNK) * x_stride * N + state_offset, h, mask=dn_ok)
        x_t, B_t = t * x_stride + x_offset, t * B_stride + B_offset
        x = tl.load(x_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
        delta = tl.load(delta_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
        B = tl.load(B_ptr + B_t, mask=n_ok, other=0.0).to(tl.float32)
        C = tl.load(C_ptr + B_t, mask=n_ok, other=0.0).to(tl.float32)
        h = tl.exp(delta[:, None] * A) * h + (delta * x)[:, None] * B[None, :]
        y = tl.sum(h * C[None, :], axis=1)
        tl.store(y_ptr + x_t, y.to(y_ptr.dtype.element_ty), mask=d_ok)
    tl.store(states_ptr + tl.cdiv(seq, CHUNK) * x_stride * N + state_offset, h, mask=dn_ok)


@jit
def _scan_backward_kernel(
    x_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    states_ptr,
    grad_y_ptr,
    scratch_ptr,
    grad_x_ptr,
    grad_delta_ptr,
    grad_A_ptr,
    grad_B_ptr,
    grad_C_ptr,
    seq,
    batch,
    d_in,
    N,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    N_PAD: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Program (b, j) of the forward, from the last chunk back: h_{t−1} of the chunk recomputed from states[c] into
    scratch, then from the chunk's end g_t = dL/dh_t = C_t dy_t + exp(δ_{t+1} A) ⊙ g_{t+1} gives dx_t = δ_t Σ_n g_t B_t,
    dδ_t = Σ_n g_t ⊙ (A ⊙ exp(δ_t A) ⊙ h_{t−1} + x_t B_t), dA += δ_t g_t ⊙ exp(δ_t A) ⊙ h_{t−1}, dB_t = Σ_d g_t δ_t x_t,
    dC_t = Σ_d dy_t h_t; dA (batch, d_in, N) and dB, dC (d-blocks, seq, batch, N) are partial sums.
    """
    b, j = tl.program_id(0), tl.program_id(1)
    d = j * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_PAD)
    d_ok, n_ok = d < d_in, n < N
    dn_ok = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
    x_stride, B_stride = tl.cast(batch, tl.int64) * d_in, tl.cast(batch, tl.int64) * N
    x_offset, B_offset = b * d_in + d, b * N + n
    state_offset = x_offset[:, None] * N + n[None, :]
    partial_offset = j * seq * B_stride
    slot = BLOCK_D * N_PAD
    scratch = (
        scratch_ptr
        + tl.cast(b * tl.num_programs(1) + j, tl.int64) * CHUNK * slot
        + tl.arange(0, BLOCK_D)[:, None] * N_PAD
        + n[None, :]
    )
    g_next = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    grad_A = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    n_chunks = tl.cdiv(seq, CHUNK)
    for c_back in range(n_chunks):
        c = n_chunks - 1 - c_back
        t0 = c * CHUNK
        length = tl.minimum(seq - t0, CHUNK)
        h = tl.load(states_ptr + c * x_stride * N + state_offset, mask=dn_ok, other=0.0)
        for i in tl.range(length, num_stages=STAGES):
            tl.store(scratch + i * slot, h)
            x_t, B_t = (t0 + i) * x_stride + x_offset, (t0 + i) * B_stride + B_offset
            x = tl.load(x_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
            delta = tl.load(delta_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
            B = tl.load(B_ptr + B_t, mask=n_ok, other=0.0).to(tl.float32)
            h = tl.exp(delta[:, None] * A) * h + (delta * x)[:, None] * B[None, :]
        tl.debug_barrier()
        for i_back in tl.range(length, num_stages=STAGES):
            i = length - 1 - i_back
            x_t, B_t = (t0 + i) * x_stride + x_offset, (t0 + i) * B_stride + B_offset
            x = tl.load(x_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
            delta = tl.load(delta_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
            grad_y = tl.load(grad_y_ptr + x_t, mask=d_ok, other=0.0).to(tl.float32)
            B = tl.load(B_ptr + B_t, mask=n_ok, other=0.0).to(tl.float32)
            C = tl.load(C_ptr + B_t, mask=n_ok, other=0.0).to(tl.float32)
            h_prev = tl.load(scratch + i * slot)
            decay = tl.exp(delta[:, None] * A)
            g = g_next + grad_y[:, None] * C[None, :]
            g_B = tl.sum(g * B[None, :], axis=1)
            g_decay_h = g * decay * h_prev
            grad_A += delta[:, None] * g_decay_h
            grad_delta = tl.sum(A * g_decay_h, axis=1) + x * g_B
            tl.store(grad_x_ptr + x_t, (delta * g_B).to(grad_x_ptr.dtype.element_ty), mask=d_ok)
            tl.store(grad_delta_ptr + x_t, grad_delta.to(grad_delta_ptr.dtype.element_ty), mask=d_ok)
            grad_B = tl.sum(g * (delta * x)[:, None], axis=0)
            grad_C = tl.sum(grad_y[:, None] * h, axis=0)
            tl.store(grad_B_ptr + partial_offset + B_t, grad_B, mask=n_ok)
            tl.store(grad_C_ptr + partial_offset + B_t, grad_C, mask=n_ok)
            g_next = decay * g
            h = h_prev
        tl.debug_barrier()
    tl.store(grad_A_ptr + state_offset, grad_A, mask=dn_ok)


_TRITON_CHUNK = 16
"""Positions between the states the Triton forward keeps for its backward."""


def triton_available() -> bool:
    """Whether the Triton scan can run (triton importable)."""
    return triton is not None


class _TritonSelectiveScan(torch.autograd.Function):
    """The selective scan as one Triton forward and one Triton backward kernel: block_d channels per program,
    num_warps warps, its loads software-pipelined over `stages` positions."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, block_d, num_warps, stages, chunk):
        seq, batch, d_in = x.shape
        N = A.shape[1]
        x, delta, A, B, C = (t.contiguous() for t in (x, delta, A, B, C))
        y = torch.empty_like(x)
        states = x.new_empty(-(-seq // chunk) + 1, batch, d_in, N, dtype=torch.float32)
        grid = (batch, -(-d_in // block_d))
        _scan_forward_kernel[grid](
            x, delta, A, B, C, y, states, seq, batch, d_in, N,
            CHUNK=chunk, BLOCK_D=block_d, N_PAD=triton.next_power_of_2(N), STAGES=stages, num_warps=num_warps,
        )  # fmt: skip
        ctx.block_d, ctx.num_warps, ctx.stages, ctx.chunk = block_d, num_warps, stages, chunk
        ctx.save_for_backward(x, delta, A, B, C, states)
        h_last = states[-1].to(x.dtype, copy=True)
        ctx.mark_non_differentiable(h_last)
        return y, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h_last):
        x, delta, A, B, C, states = ctx.saved_tensors
        seq, batch, d_in = x.shape
        N, N_PAD, block_d = A.shape[1], triton.next_power_of_2(A.shape[1]), ctx.block_d
        d_blocks = -(-d_in // block_d)
        grad_x, grad_delta = torch.empty_like(x), torch.empty_like(delta)
        grad_A = x.new_empty(batch, d_in, N, dtype=torch.float32)
        grad_B, grad_C = (x.new_empty(d_blocks, seq, batch, N, dtype=torch.float32) for _ in range(2))
        scratch = x.new_empty(batch * d_blocks, ctx.chunk, block_d, N_PAD, dtype=torch.float32)
        _scan_backward_kernel[(batch, d_blocks)](
            x, delta, A, B, C, states, grad_y.contiguous(), scratch, grad_x, grad_delta, grad_A, grad_B, grad_C,
            seq, batch, d_in, N, CHUNK=ctx.chunk, BLOCK_D=block_d, N_PAD=N_PAD, STAGES=ctx.stages,
            num_warps=ctx.num_warps,
        )  # fmt: skip
        grad_A, grad_B, grad_C = grad_A.sum(0).to(A.dtype), grad_B.sum(0).to(B.dtype), grad_C.sum(0).to(C.dtype)
        return grad_x, grad_delta, grad_A, grad_B, grad_C, None, None, None, None


def triton_config(d_in: int, d_state: int, tile: int = 1024) -> tuple[int, int, int]:
    """(channels per program, warps, pipeline stages): about `tile` state elements per program
    (the fastest of 36 settings on an H100 at d_in 256, N 16, batch 256, seq 256: 1.53 ms fwd+bwd)."""
    block_d = max(1, min(tile // triton.next_power_of_2(d_state), triton.next_power_of_2(d_in)))
    return block_d, 2, 3


def triton_scan(
    x, delta, A, B, C, block_d: int, num_warps: int, stages: int, chunk: int = _TRITON_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, h_last) of the selective scan by the Triton kernels with the given launch settings (`triton_config`
    gives the default ones; `chunk` positions between the states kept for the backward); shapes as in
    `reference_scan`, float32 inside. h_last carries no gradient."""
    return _TritonSelectiveScan.apply(x, delta, A, B, C, block_d, num_warps, stages, chunk)
