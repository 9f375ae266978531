"""The fused polynomial-kernel attention kernels against the plain PyTorch reference, and the fused
training view of Based and ReBased against their chunked view.

The kernel checks run compiled on CUDA when a GPU is there, and otherwise in Triton's CPU
interpreter. Triton decides between the two when it is imported (TRITON_INTERPRET=1) and
interpreting patches triton.language for the whole process, so `test_kernels_under_the_interpreter`
runs this file again in a subprocess with TRITON_INTERPRET=1, where the device is "cpu".
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoology import mixers
from zoology.ops import poly_attention as pa
from zoology.ops.triton_support import INTERPRETED, triton

BASED = (1.0, 1.0, 0.5)
SQUARE = (0.0, 0.0, 1.0)

DEVICES = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            not INTERPRETED, reason="interpreted in a subprocess by test_kernels_under_the_interpreter"
        ),
    ),
    pytest.param("cuda", marks=pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs CUDA")),
]
# max |error| / max |reference| against a float64 reference on the same inputs: float32 inputs get
# exact float32 products; bf16 inputs round K, dS and y to bf16 (measured ≤ 1e-6 and ≤ 1e-2).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).abs().max() / expected.abs().max())


def inputs(batch, heads, seq_len, f, d_h, device, dtype, seed=0):
    """q, k, v of the given dtype on the device, made from float32 N(0, 1) draws."""
    generator = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, heads, seq_len, f, generator=generator) for _ in range(2))
    v = torch.randn(batch, heads, seq_len, d_h, generator=generator)
    dy = torch.randn(batch, heads, seq_len, d_h, generator=generator)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, dy)]


def fused_and_reference(q, k, v, dy, coeffs, scale, offset):
    """(y, den, dq, dk, dv) from the kernels and from the float64 reference on the same inputs."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    y, den = pa.causal_poly_attention(*leaves, coeffs, scale, offset)
    y.backward(dy)
    fused = (y, den, *(t.grad for t in leaves))
    leaves64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
    y64, den64 = pa.reference_poly_attention(*leaves64, coeffs, scale, offset)
    y64.backward(dy.double())
    return fused, (y64, den64, *(t.grad for t in leaves64))


CASES = [
    pytest.param(coeffs, offset, shape, dtype, id=f"{name}-{dtype_name}")
    for coeffs, offset, shape, name in [
        (BASED, False, (2, 2, 100, 8, 4), "based-f8-dh4"),
        (BASED, False, (1, 2, 130, 24, 128), "based-f24-dh128"),
        (SQUARE, True, (2, 2, 100, 8, 4), "square-f8-dh4"),
        (SQUARE, True, (1, 2, 77, 24, 128), "square-f24-dh128"),
    ]
    for dtype, dtype_name in [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]
]
# One position: dq and dk come from v_0 − y_0 with y_0 ≈ v_0, so bf16's rounding of y_0 dominates them.
CASES.append(pytest.param(SQUARE, True, (1, 1, 1, 16, 16), torch.float32, id="square-l1-fp32"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("coeffs, tensor_offset, shape, dtype", CASES)
def test_forward_and_gradients_match_the_reference(device, coeffs, tensor_offset, shape, dtype):
    batch, heads, seq_len, f, d_h = shape
    q, k, v, dy = inputs(*shape, device=device, dtype=dtype)
    if tensor_offset:
        offset = torch.rand(batch, heads, seq_len, device=device) * 2
    else:
        offset = 1e-12
    fused, reference = fused_and_reference(q, k, v, dy, coeffs, 1 / math.sqrt(f), offset)
    y, den = fused[:2]
    assert y.shape == v.shape and y.dtype == dtype
    assert den.shape == (batch, heads, seq_len) and den.dtype == torch.float32 and not den.requires_grad
    for name, actual, expected in zip(("y", "den", "dq", "dk", "dv"), fused, reference):
        err = rel_error(actual, expected)
        assert err <= TOLERANCE[dtype], f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs_and_output_gradient(device):
    """q, k, v as (batch, seq, heads, ·) projections viewed as (batch, heads, seq, ·), and a
    non-contiguous output gradient, give the contiguous result."""
    batch, heads, seq_len, f, d_h = 2, 3, 70, 16, 8
    generator = torch.Generator().manual_seed(1)
    qkv = torch.randn(batch, seq_len, heads, 2 * f + d_h, generator=generator).to(device)
    q, k, v = (t.transpose(1, 2) for t in qkv.split([f, f, d_h], dim=-1))
    dy = torch.randn(batch, heads, d_h, seq_len, generator=generator).to(device).transpose(-1, -2)
    fused, _ = fused_and_reference(q, k, v, dy, BASED, 0.25, 1e-12)
    contiguous, _ = fused_and_reference(
        q.contiguous(), k.contiguous(), v.contiguous(), dy.contiguous(), BASED, 0.25, 1e-12
    )
    for actual, expected in zip(fused, contiguous):
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_square_kernel_denominator_is_exactly_zero_for_orthogonal_queries(device):
    """K = s² is evaluated as a square: a query orthogonal to every key gets den = 0 exactly, and
    y = 0 / (0 + ε) = 0, where an expanded feature map would leave rounding noise of either sign."""
    batch, heads, seq_len, f = 1, 1, 90, 8
    k = torch.randn(batch, heads, seq_len, f)
    k[..., 0] = 0.0
    q = torch.randn(batch, heads, seq_len, f)
    q[..., 50:, 1:] = 0.0
    v = torch.randn(batch, heads, seq_len, 4)
    y, den = pa.causal_poly_attention(*(t.to(device) for t in (q, k, v)), SQUARE, 1 / math.sqrt(f), 1e-12)
    assert (den >= 0).all()
    assert torch.equal(den[..., 50:], torch.zeros_like(den[..., 50:]))
    assert torch.equal(y[..., 50:, :], torch.zeros_like(y[..., 50:, :]))


def _module_pair(name: str, **kwargs):
    torch.manual_seed(0)
    chunked = mixers.build(name, d_model=32, view="chunked", **kwargs)
    fused = mixers.build(name, d_model=32, view="fused", **kwargs)
    fused.load_state_dict(chunked.state_dict())
    return chunked, fused


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name, kwargs",
    [("based", {"feature_dim": 8, "num_heads": 2}), ("rebased", {"feature_dim": 8, "num_heads": 4})],
)
def test_fused_view_matches_chunked_view(device, name, kwargs):
    """Same outputs and parameter gradients in float32; under bf16 autocast within bf16 rounding."""
    chunked, fused = (m.to(device) for m in _module_pair(name, **kwargs))
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 75, 32, generator=generator).to(device)
    grad = torch.randn(2, 75, 32, generator=generator).to(device)
    outputs = []
    for mixer in (chunked, fused):
        y = mixer(x)
        y.backward(grad)
        outputs.append((y.detach(), {n: p.grad for n, p in mixer.named_parameters()}))
    (y_chunked, grads_chunked), (y_fused, grads_fused) = outputs
    assert rel_error(y_fused, y_chunked) < 1e-5
    for n, g in grads_chunked.items():
        assert rel_error(grads_fused[n], g) < 1e-4, n

    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        low = fused(x)
    assert low.dtype == torch.bfloat16
    assert rel_error(low, y_chunked) < 5e-2

    y_prefill, state = fused.prefill(x)
    _, state_chunked = chunked.prefill(x)
    assert torch.equal(y_prefill, fused(x))
    for key in state:
        torch.testing.assert_close(state[key], state_chunked[key], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(INTERPRETED, reason="only outside the interpreter")
@pytest.mark.parametrize("name", ["based", "rebased"])
def test_fused_view_on_the_cpu_needs_the_interpreter_and_auto_stays_chunked(name):
    chunked, fused = _module_pair(name, feature_dim=4)
    auto = mixers.build(name, d_model=32, feature_dim=4)
    auto.load_state_dict(chunked.state_dict())
    x = torch.randn(2, 9, 32)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        fused(x)
    assert torch.equal(auto(x), chunked(x))
    with pytest.raises(ValueError, match="view="):
        mixers.build(name, d_model=32, view="recurrent")


@pytest.mark.skipif(triton is None, reason="needs triton")
@pytest.mark.skipif(INTERPRETED, reason="this is the interpreted run")
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the compiled kernels are checked instead")
def test_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-o", "addopts=", "-p", "no:cacheprovider"]
    command += ["-k", "not test_kernels_under_the_interpreter"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 10 and "failed" not in result.stdout, output
