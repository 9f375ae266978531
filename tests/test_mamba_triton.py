"""The Triton selective scan against the sequential reference: y, h_last and the gradients of x, δ, A, B, C.

Each case runs in triton's interpreter on the CPU (in a subprocess: TRITON_INTERPRET must be set before
triton is first imported, and this process's triton stays compiled) or, when CUDA is present, compiled on the GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoology
from zoology.ops.selective_scan import reference_scan, selective_scan, triton_available
from zoology.ops.selective_scan.triton import triton_scan

CASES = {
    "seq1-N8": dict(seq=1, d_in=6, N=8, block_d=4),
    "seq40-N8": dict(seq=40, d_in=6, N=8, block_d=4),
    "seq40-N16": dict(seq=40, d_in=11, N=16, block_d=8),
    "seq40-N24": dict(seq=40, d_in=5, N=24, block_d=4),
    "seq33-N5": dict(seq=33, d_in=3, N=5, block_d=2),
    "seq20-N16-dispatch": dict(seq=20, d_in=5, N=16, block_d=None),
    "seq40-N16-bf16": dict(seq=40, d_in=5, N=16, block_d=4, dtype="bfloat16"),
    "seq40-N8-chunk7": dict(seq=40, d_in=6, N=8, block_d=4, chunk=7),
    "seq40-N8-chunk64": dict(seq=40, d_in=6, N=8, block_d=4, chunk=64),
}
OUTPUTS = ("y", "h_last", "grad x", "grad delta", "grad A", "grad B", "grad C")
FLOAT32_TOLERANCE, BF16_TOLERANCE = 1e-5, 2e-2


def scan_errors(seq, d_in, N, block_d, device, batch=2, dtype="float32", chunk=16) -> dict[str, float]:
    """Max |triton − reference| / max |reference| of each output, the reference in float64 on the same inputs
    (`chunk`: positions between the states the forward keeps, one not dividing seq, one beyond it)."""
    gen = torch.Generator().manual_seed(seq * 1000 + d_in * 10 + N)
    inputs = [
        torch.randn(seq, batch, d_in, generator=gen),
        torch.rand(seq, batch, d_in, generator=gen) * 2,
        -torch.exp(torch.randn(d_in, N, generator=gen)),
        torch.randn(seq, batch, N, generator=gen),
        torch.randn(seq, batch, N, generator=gen),
    ]
    inputs = [t.to(device=device, dtype=getattr(torch, dtype)).requires_grad_() for t in inputs]
    if block_d is None:
        y, h = selective_scan(*inputs, backend="triton")
    else:
        y, h = triton_scan(*inputs, block_d, 4, 3, chunk)
    assert y.dtype == h.dtype == inputs[0].dtype and h.shape == (batch, d_in, N)
    grad_y = torch.randn(seq, batch, d_in, generator=gen).to(device)
    grads = torch.autograd.grad(y, inputs, grad_y.to(y.dtype))
    reference_inputs = [t.detach().double().requires_grad_() for t in inputs]
    y_ref, h_ref = reference_scan(*reference_inputs)
    grads_ref = torch.autograd.grad(y_ref, reference_inputs, grad_y.double())
    errors = {}
    for name, got, want in zip(OUTPUTS, (y, h, *grads), (y_ref, h_ref, *grads_ref)):
        assert got.dtype == inputs[0].dtype, f"{name} is {got.dtype}"
        errors[name] = ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    return errors


def check(errors: dict[str, float], dtype: str = "float32") -> None:
    tolerance = BF16_TOLERANCE if dtype == "bfloat16" else FLOAT32_TOLERANCE
    bad = {name: error for name, error in errors.items() if not error <= tolerance}
    assert not bad, f"relative errors above {tolerance}: {bad}"


@pytest.fixture(scope="module")
def interpreted_errors() -> dict[str, dict[str, float]]:
    """Every case's errors from one subprocess running this file under TRITON_INTERPRET=1."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    root = str(Path(zoology.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    run = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the compiled kernels are checked instead")
@pytest.mark.parametrize("case", CASES)
def test_triton_scan_in_the_interpreter_matches_reference(case, interpreted_errors):
    check(interpreted_errors[case], CASES[case].get("dtype", "float32"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES)
def test_triton_scan_on_cuda_matches_reference(case):
    if not triton_available():
        pytest.skip("triton is not installed")
    check(scan_errors(**CASES[case], device="cuda"), CASES[case].get("dtype", "float32"))


def small_scan_inputs(device, dtype):
    gen = torch.Generator().manual_seed(0)
    shapes = ((9, 2, 3), (9, 2, 3), (3, 4), (9, 2, 4), (9, 2, 4))
    x, delta, A, B, C = (torch.randn(*shape, generator=gen) for shape in shapes)
    return [t.to(device, dtype).requires_grad_() for t in (x, delta.abs(), -A.abs(), B, C)]


def test_on_the_cpu_auto_is_the_chunked_scan_and_backends_are_checked():
    y, _ = selective_scan(*small_scan_inputs("cpu", torch.float32))
    assert type(y.grad_fn).__name__ == "_SelectiveScanBackward"
    with pytest.raises(ValueError, match="backend='cuda' must be one of"):
        selective_scan(*small_scan_inputs("cpu", torch.float32), backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_auto_is_triton_up_to_float32_and_the_chunked_scan_for_float64():
    if not triton_available():
        pytest.skip("triton is not installed")
    for dtype, backward in ((torch.float32, "_TritonSelectiveScanBackward"), (torch.float64, "_SelectiveScanBackward")):
        y, _ = selective_scan(*small_scan_inputs("cuda", dtype))
        assert type(y.grad_fn).__name__ == backward, dtype


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through pytest, which sets TRITON_INTERPRET=1"
    print(json.dumps({case: scan_errors(**kwargs, device="cpu") for case, kwargs in CASES.items()}))
