"""Causal polynomial-kernel attention as fused Triton kernels (the training view of Based and ReBased on CUDA).

Per (batch, head), with s_tj = scale · q_t·k_j and K_tj = a0 + a1·s_tj + a2·s_tj² for j ≤ t:

    num_t = Σ_{j≤t} K_tj v_j,   den_t = Σ_{j≤t} K_tj,   y_t = num_t / (den_t + offset_t)

Shapes: q, k (batch, heads, seq, f); v (batch, heads, seq, d_h); y (batch, heads, seq, d_h) in v's
dtype; den (batch, heads, seq) in float32. Based is (a0, a1, a2) = (1, 1, ½); ReBased (0, 0, 1), where
K = s·s is evaluated directly, so every term and den are ≥ 0.

The forward pass runs one program per (batch·head, block of queries) and loops over the key blocks
at or before it, never building the l×l matrix; s, K, den and every dot product accumulate in
float32 (exact float32 products for float32 inputs; bf16/fp16 inputs feed the tensor cores). For
bf16/fp16, K is rounded to that dtype as the operand of K@v and den sums those same rounded values,
so y is an exact weighted average of the v_j (about half the error of dividing by the unrounded sum).
The backward pass recomputes K from q, k (only q, k, v, y, den are kept). With D_t = den_t + offset_t
(offset a constant), y_t = num_t / D_t gives dL/dnum_t = g_t = dy_t / D_t and
dL/dden_t = −Σ_d dy_t·num_t / D_t² = −Δ_t with Δ_t = Σ_d dy_t·y_t / D_t, so

    dL/dK_tj = g_t·v_j − Δ_t,   dS_tj = dL/dK_tj · (a1 + 2·a2·s_tj),
    dq = scale · dS @ k,   dk = scale · dSᵀ @ q,   dv = Kᵀ @ g

in two kernels: dq per block of queries, dk and dv per block of keys (looping over the query blocks
at or after it). den is an auxiliary output without a gradient.

On CUDA tensors the kernels are compiled; with TRITON_INTERPRET=1 set before triton is imported,
they run in Triton's interpreter on CPU tensors (slow; for tests). `naive.reference_poly_attention` is
the same function in plain PyTorch (masked l×l form). Without triton installed this module imports, and
`available` is False.
"""

from __future__ import annotations

import contextlib

import torch

from zoology.ops.triton_support import INTERPRETED, tl, triton
from zoology.ops.triton_support import jit as _jit

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 64


@_jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in float32. UPCAST gives the interpreter float32 operands (its bf16 dot is
    wrong); the products are the same, since a product of two bf16 values is exact in float32."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@_jit
def _load_rows(ptr, rows, row_stride, seq_len, WIDTH: tl.constexpr, PADDED: tl.constexpr):
    """The (len(rows), PADDED) tile ptr[rows, :WIDTH], zero past the sequence and past WIDTH."""
    cols = tl.arange(0, PADDED)
    mask = (rows[:, None] < seq_len) & (cols[None, :] < WIDTH)
    return tl.load(ptr + rows[:, None] * row_stride + cols[None, :], mask=mask, other=0.0)


@_jit
def _store_rows(ptr, rows, row_stride, seq_len, tile, WIDTH: tl.constexpr, PADDED: tl.constexpr):
    """ptr[rows, :WIDTH] = tile (len(rows), PADDED) in ptr's dtype, for the rows inside the sequence."""
    cols = tl.arange(0, PADDED)
    mask = (rows[:, None] < seq_len) & (cols[None, :] < WIDTH)
    tl.store(ptr + rows[:, None] * row_stride + cols[None, :], tile.to(ptr.dtype.element_ty), mask=mask)


@_jit
def _forward_blocks(
    num, den, q, rows, k_ptr, v_ptr, k_sl, v_sl, lo, hi, seq_len, scale,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr,
    MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Add the key blocks in [lo, hi) to num (M, DP) and den (M,); MASK applies j ≤ t."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_rows(k_ptr, cols, k_sl, seq_len, F, FP)
        v = _load_rows(v_ptr, cols, v_sl, seq_len, DH, DP)
        s = _dot(q, tl.trans(k), PRECISION, UPCAST) * scale
        kern = A0 + s * (A1 + A2 * s)
        if MASK:
            kern = tl.where(rows[:, None] >= cols[None, :], kern, 0.0)
        kern = kern.to(v.dtype)
        den += tl.sum(kern.to(tl.float32), 1)
        num += _dot(kern, v, PRECISION, UPCAST)
    return num, den


@_jit
def _forward_kernel(
    q_ptr, k_ptr, v_ptr, offset_ptr, y_ptr, den_ptr,
    q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, y_sb, y_sh, y_sl,
    num_heads, seq_len, scale, offset_value,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr, OFFSET_TENSOR: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """y and den for one block of BLOCK_M queries of one (batch, head); the last blocks run first."""
    bh = tl.program_id(0)
    start_m = (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M
    b, h = (bh // num_heads).to(tl.int64), (bh % num_heads).to(tl.int64)
    q_ptr += b * q_sb + h * q_sh
    k_ptr += b * k_sb + h * k_sh
    v_ptr += b * v_sb + h * v_sh
    y_ptr += b * y_sb + h * y_sh
    den_ptr += bh.to(tl.int64) * seq_len
    offset_ptr += bh.to(tl.int64) * seq_len
    rows = start_m + tl.arange(0, BLOCK_M)
    q = _load_rows(q_ptr, rows, q_sl, seq_len, F, FP)
    num = tl.zeros((BLOCK_M, DP), dtype=tl.float32)
    den = tl.zeros((BLOCK_M,), dtype=tl.float32)
    num, den = _forward_blocks(
        num, den, q, rows, k_ptr, v_ptr, k_sl, v_sl, 0, start_m, seq_len, scale,
        A0, A1, A2, F, DH, FP, DP, False, PRECISION, UPCAST, BLOCK_N,
    )  # fmt: skip
    num, den = _forward_blocks(
        num, den, q, rows, k_ptr, v_ptr, k_sl, v_sl, start_m, tl.minimum(start_m + BLOCK_M, seq_len), seq_len, scale,
        A0, A1, A2, F, DH, FP, DP, True, PRECISION, UPCAST, BLOCK_N,
    )  # fmt: skip
    if OFFSET_TENSOR:
        offset = tl.load(offset_ptr + rows, mask=rows < seq_len, other=1.0)
    else:
        offset = offset_value
    _store_rows(y_ptr, rows, y_sl, seq_len, num / (den + offset)[:, None], DH, DP)
    tl.store(den_ptr + rows, den, mask=rows < seq_len)


@_jit
def _backward_prep_kernel(
    y_ptr, dy_ptr, den_ptr, offset_ptr, inv_ptr, delta_ptr,
    y_sb, y_sh, y_sl, dy_sb, dy_sh, dy_sl,
    num_heads, seq_len, offset_value,
    DH: tl.constexpr, DP: tl.constexpr, OFFSET_TENSOR: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """1 / D_t and Δ_t = Σ_d dy_t·y_t / D_t for one block of positions, D_t = den_t + offset_t."""
    bh = tl.program_id(0)
    b, h = (bh // num_heads).to(tl.int64), (bh % num_heads).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    in_seq = rows < seq_len
    y = _load_rows(y_ptr + b * y_sb + h * y_sh, rows, y_sl, seq_len, DH, DP).to(tl.float32)
    dy = _load_rows(dy_ptr + b * dy_sb + h * dy_sh, rows, dy_sl, seq_len, DH, DP).to(tl.float32)
    positions = bh.to(tl.int64) * seq_len + rows
    den = tl.load(den_ptr + positions, mask=in_seq, other=0.0)
    if OFFSET_TENSOR:
        offset = tl.load(offset_ptr + positions, mask=in_seq, other=1.0)
    else:
        offset = offset_value
    inv = 1.0 / (den + offset)
    tl.store(inv_ptr + positions, inv, mask=in_seq)
    tl.store(delta_ptr + positions, tl.sum(dy * y, 1) * inv, mask=in_seq)


@_jit
def _dq_blocks(
    dq, q, dy, inv, delta, rows, k_ptr, v_ptr, k_sl, v_sl, lo, hi, seq_len, scale,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr,
    MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Add dS @ k over the key blocks in [lo, hi) to dq (M, FP), without the factor scale."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_rows(k_ptr, cols, k_sl, seq_len, F, FP)
        v = _load_rows(v_ptr, cols, v_sl, seq_len, DH, DP)
        s = _dot(q, tl.trans(k), PRECISION, UPCAST) * scale
        dkern = _dot(dy, tl.trans(v), PRECISION, UPCAST) * inv[:, None] - delta[:, None]
        ds = dkern * (A1 + 2 * A2 * s)
        if MASK:
            ds = tl.where(rows[:, None] >= cols[None, :], ds, 0.0)
        dq += _dot(ds.to(k.dtype), k, PRECISION, UPCAST)
    return dq


@_jit
def _backward_dq_kernel(
    q_ptr, k_ptr, v_ptr, dy_ptr, inv_ptr, delta_ptr, dq_ptr,
    q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, dy_sb, dy_sh, dy_sl, dq_sb, dq_sh, dq_sl,
    num_heads, seq_len, scale,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dq for one block of BLOCK_M queries of one (batch, head); the last blocks run first."""
    bh = tl.program_id(0)
    start_m = (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M
    b, h = (bh // num_heads).to(tl.int64), (bh % num_heads).to(tl.int64)
    k_ptr += b * k_sb + h * k_sh
    v_ptr += b * v_sb + h * v_sh
    rows = start_m + tl.arange(0, BLOCK_M)
    in_seq = rows < seq_len
    q = _load_rows(q_ptr + b * q_sb + h * q_sh, rows, q_sl, seq_len, F, FP)
    dy = _load_rows(dy_ptr + b * dy_sb + h * dy_sh, rows, dy_sl, seq_len, DH, DP)
    inv = tl.load(inv_ptr + bh.to(tl.int64) * seq_len + rows, mask=in_seq, other=0.0)
    delta = tl.load(delta_ptr + bh.to(tl.int64) * seq_len + rows, mask=in_seq, other=0.0)
    dq = tl.zeros((BLOCK_M, FP), dtype=tl.float32)
    dq = _dq_blocks(
        dq, q, dy, inv, delta, rows, k_ptr, v_ptr, k_sl, v_sl, 0, start_m, seq_len, scale,
        A0, A1, A2, F, DH, FP, DP, False, PRECISION, UPCAST, BLOCK_N,
    )  # fmt: skip
    dq = _dq_blocks(
        dq, q, dy, inv, delta, rows, k_ptr, v_ptr, k_sl, v_sl, start_m, tl.minimum(start_m + BLOCK_M, seq_len),
        seq_len, scale, A0, A1, A2, F, DH, FP, DP, True, PRECISION, UPCAST, BLOCK_N,
    )  # fmt: skip
    _store_rows(dq_ptr + b * dq_sb + h * dq_sh, rows, dq_sl, seq_len, dq * scale, F, FP)


@_jit
def _dkdv_blocks(
    dk, dv, k, v, cols, q_ptr, dy_ptr, inv_ptr, delta_ptr, q_sl, dy_sl, lo, hi, seq_len, scale,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr,
    MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """Add dSᵀ @ q (without the factor scale) and Kᵀ @ g over the query blocks in [lo, hi) to dk
    (N, FP) and dv (N, DP). Queries past the sequence load inv = Δ = 0, so they add nothing."""
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        in_seq = rows < seq_len
        q = _load_rows(q_ptr, rows, q_sl, seq_len, F, FP)
        dy = _load_rows(dy_ptr, rows, dy_sl, seq_len, DH, DP)
        inv = tl.load(inv_ptr + rows, mask=in_seq, other=0.0)
        delta = tl.load(delta_ptr + rows, mask=in_seq, other=0.0)
        s_t = _dot(k, tl.trans(q), PRECISION, UPCAST) * scale
        kern_t = (A0 + s_t * (A1 + A2 * s_t)) * inv[None, :]
        ds_t = (_dot(v, tl.trans(dy), PRECISION, UPCAST) * inv[None, :] - delta[None, :]) * (A1 + 2 * A2 * s_t)
        if MASK:
            causal = rows[None, :] >= cols[:, None]
            kern_t = tl.where(causal, kern_t, 0.0)
            ds_t = tl.where(causal, ds_t, 0.0)
        dv += _dot(kern_t.to(dy.dtype), dy, PRECISION, UPCAST)
        dk += _dot(ds_t.to(q.dtype), q, PRECISION, UPCAST)
    return dk, dv


@_jit
def _backward_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, dy_ptr, inv_ptr, delta_ptr, dk_ptr, dv_ptr,
    q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, dy_sb, dy_sh, dy_sl,
    dk_sb, dk_sh, dk_sl, dv_sb, dv_sh, dv_sl,
    num_heads, seq_len, scale,
    A0: tl.constexpr, A1: tl.constexpr, A2: tl.constexpr,
    F: tl.constexpr, DH: tl.constexpr, FP: tl.constexpr, DP: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dk and dv for one block of BLOCK_N keys of one (batch, head); the first blocks (most queries) run first."""
    bh = tl.program_id(0)
    start_n = tl.program_id(1) * BLOCK_N
    b, h = (bh // num_heads).to(tl.int64), (bh % num_heads).to(tl.int64)
    q_ptr += b * q_sb + h * q_sh
    dy_ptr += b * dy_sb + h * dy_sh
    inv_ptr += bh.to(tl.int64) * seq_len
    delta_ptr += bh.to(tl.int64) * seq_len
    cols = start_n + tl.arange(0, BLOCK_N)
    k = _load_rows(k_ptr + b * k_sb + h * k_sh, cols, k_sl, seq_len, F, FP)
    v = _load_rows(v_ptr + b * v_sb + h * v_sh, cols, v_sl, seq_len, DH, DP)
    dk = tl.zeros((BLOCK_N, FP), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, DP), dtype=tl.float32)
    dk, dv = _dkdv_blocks(
        dk, dv, k, v, cols, q_ptr, dy_ptr, inv_ptr, delta_ptr, q_sl, dy_sl,
        start_n, tl.minimum(start_n + BLOCK_N, seq_len), seq_len, scale,
        A0, A1, A2, F, DH, FP, DP, True, PRECISION, UPCAST, BLOCK_M,
    )  # fmt: skip
    dk, dv = _dkdv_blocks(
        dk, dv, k, v, cols, q_ptr, dy_ptr, inv_ptr, delta_ptr, q_sl, dy_sl, start_n + BLOCK_N, seq_len, seq_len, scale,
        A0, A1, A2, F, DH, FP, DP, False, PRECISION, UPCAST, BLOCK_M,
    )  # fmt: skip
    _store_rows(dk_ptr + b * dk_sb + h * dk_sh, cols, dk_sl, seq_len, dk * scale, F, FP)
    _store_rows(dv_ptr + b * dv_sb + h * dv_sh, cols, dv_sl, seq_len, dv, DH, DP)


def available(x: torch.Tensor) -> bool:
    """Whether the kernels can run on x: triton installed, a supported dtype, and x on CUDA (or on the
    CPU under TRITON_INTERPRET=1)."""
    if triton is None or x.dtype not in SUPPORTED_DTYPES:
        return False
    return x.device.type == "cuda" or (INTERPRETED and x.device.type == "cpu")


def use_fused(view: str, x: torch.Tensor) -> bool:
    """Whether a mixer's training view runs these kernels on x: view "fused" (an error where they
    cannot run), or "auto" for CUDA tensors they support; other views never."""
    if view == "fused":
        if not available(x):
            raise ValueError(
                f"view='fused' needs triton and {[str(d) for d in SUPPORTED_DTYPES]} tensors on CUDA (or on "
                f"the CPU under TRITON_INTERPRET=1); got {x.dtype} on {x.device}"
            )
        return True
    return view == "auto" and x.device.type == "cuda" and available(x)


def _padded(n: int) -> int:
    """The block width for a dimension of size n: a power of two ≥ 16 (what tl.dot needs)."""
    return max(16, triton.next_power_of_2(n))


def _last_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _on(device: torch.device):
    """Launch on the tensors' GPU (triton launches on the current one)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class _CausalPolyAttention(torch.autograd.Function):
    """(q, k, v, coeffs, scale, offset) -> (y, den); saves q, k, v, y, den and a tensor offset."""

    @staticmethod
    def forward(ctx, q, k, v, coeffs, scale, offset):
        q, k, v = (_last_contiguous(t) for t in (q, k, v))
        batch, heads, seq_len, f = q.shape
        d_h = v.shape[-1]
        offset_tensor = offset if isinstance(offset, torch.Tensor) else None
        y = v.new_empty(batch, seq_len, heads, d_h).transpose(1, 2)
        den = torch.empty(batch, heads, seq_len, device=q.device, dtype=torch.float32)
        grid = (batch * heads, triton.cdiv(seq_len, BLOCK))
        with _on(q.device):
            _forward_kernel[grid](
                q, k, v, offset_tensor if offset_tensor is not None else den, y, den,
                *_strides(q), *_strides(k), *_strides(v), *_strides(y),
                heads, seq_len, scale, 0.0 if offset_tensor is not None else offset,
                *coeffs, f, d_h, _padded(f), _padded(d_h), offset_tensor is not None,
                _precision(q.dtype), INTERPRETED, BLOCK, _inner_block(d_h), num_warps=_num_warps(d_h),
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, y, den, offset_tensor)
        ctx.coeffs, ctx.scale, ctx.offset = coeffs, scale, offset
        ctx.mark_non_differentiable(den)
        return y, den

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _):
        q, k, v, y, den, offset_tensor = ctx.saved_tensors
        coeffs, scale = ctx.coeffs, ctx.scale
        dy = _last_contiguous(dy.to(v.dtype))
        batch, heads, seq_len, f = q.shape
        d_h = v.shape[-1]
        fp, dp = _padded(f), _padded(d_h)
        precision, inner, warps = _precision(q.dtype), _inner_block(d_h), _num_warps(d_h)
        inv, delta = torch.empty(2, batch, heads, seq_len, device=q.device, dtype=torch.float32).unbind(0)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grid = (batch * heads, triton.cdiv(seq_len, BLOCK))
        with _on(q.device):
            _backward_prep_kernel[grid](
                y, dy, den, offset_tensor if offset_tensor is not None else den, inv, delta,
                *_strides(y), *_strides(dy), heads, seq_len, 0.0 if offset_tensor is not None else ctx.offset,
                d_h, dp, offset_tensor is not None, BLOCK, num_warps=warps,
            )  # fmt: skip
            _backward_dq_kernel[grid](
                q, k, v, dy, inv, delta, dq,
                *_strides(q), *_strides(k), *_strides(v), *_strides(dy), *_strides(dq),
                heads, seq_len, scale, *coeffs, f, d_h, fp, dp, precision, INTERPRETED, BLOCK, inner,
                num_warps=warps,
            )  # fmt: skip
            _backward_dkdv_kernel[grid](
                q, k, v, dy, inv, delta, dk, dv,
                *_strides(q), *_strides(k), *_strides(v), *_strides(dy), *_strides(dk), *_strides(dv),
                heads, seq_len, scale, *coeffs, f, d_h, fp, dp, precision, INTERPRETED, inner, BLOCK,
                num_warps=warps,
            )  # fmt: skip
        return dq, dk, dv, None, None, None


def _precision(dtype: torch.dtype) -> str:
    """Exact float32 products for float32 inputs (never tf32); tensor cores for bf16/fp16."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _inner_block(d_h: int) -> int:
    """The block of the inner loop: halved for heads wider than 128, so the (block, d_h) tiles fit in registers."""
    return BLOCK if _padded(d_h) <= 128 else BLOCK // 2


def _num_warps(d_h: int) -> int:
    """Warps per program: 4, or 8 for heads wider than 128 (the (BLOCK, d_h) float32 accumulators)."""
    return 4 if _padded(d_h) <= 128 else 8


def causal_poly_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    coeffs: tuple[float, float, float],
    scale: float,
    offset: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = Σ_{j≤t} K_tj v_j / (Σ_{j≤t} K_tj + offset_t) with K = a0 + a1·s + a2·s², s = scale·q_t·k_j.

    q, k (batch, heads, seq, f) and v (batch, heads, seq, d_h) of one dtype in SUPPORTED_DTYPES;
    offset a float or a (batch, heads, seq) tensor, a constant for autograd. Returns y (batch, heads,
    seq, d_h) in v's dtype (differentiable in q, k, v) and den = Σ_{j≤t} K_tj (batch, heads, seq) float32
    (summing K as rounded for K@v under bf16/fp16).
    """
    if triton is None:
        raise RuntimeError("causal_poly_attention needs triton (pip install 'triton>=3.0')")
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"q, k must be (batch, heads, seq, f) and v (batch, heads, seq, d_h) with matching leading dims; "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"q, k, v must share one dtype of {[str(d) for d in SUPPORTED_DTYPES]}; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not available(q) or not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v must be on one CUDA device (or the CPU under TRITON_INTERPRET=1); got {q.device}, "
            f"{k.device}, {v.device}"
        )
    if q.shape[2] < 1:
        raise ValueError(f"seq={q.shape[2]} must be >= 1")
    if isinstance(offset, torch.Tensor):
        if offset.shape != q.shape[:3]:
            raise ValueError(f"offset must be a float or a (batch, heads, seq) tensor; got shape {tuple(offset.shape)}")
        offset = offset.detach().to(device=q.device, dtype=torch.float32).contiguous()
    else:
        offset = float(offset)
    a0, a1, a2 = (float(c) for c in coeffs)
    return _CausalPolyAttention.apply(q, k, v, (a0, a1, a2), float(scale), offset)
