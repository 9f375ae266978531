"""fla-core's kernels, through our adapters and inside the mixers, against our PyTorch reference (CUDA with the
`fla` extra: `pip install -e ".[fla]"`; the pinned-autotuning rule is checked everywhere).

Errors are max |fast − reference| / max |reference| over every element. Tolerances:
- float32 1e-2: Triton computes float32 dot products in tf32 by default (10-bit mantissa, u = 4.9e-4); the
  chunked kernels chain about four such products of up to 128 terms, and the max over ~10^5 elements lies a
  few standard deviations out: a few 1e-3. Wrong scales, layouts or argument orders give errors of order 1.
- bf16 3e-2 for outputs, 6e-2 for gradients: both sides get the same bf16 inputs (the reference runs in
  float64 on them), so what differs is the kernels' bf16 intermediates (u = 3.9e-3 each; fla keeps per-chunk
  states, WY factors and the gradients' per-chunk states in the inputs' dtype), several in a row, more of
  them on the backward's longer chains.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoology.bench import kernels
from zoology.ops import fla_support
from zoology.ops.dplr import reference_dplr

needs_fla = pytest.mark.skipif(
    not (torch.cuda.is_available() and fla_support.installed()), reason="needs CUDA and fla-core (the fla extra)"
)
TOLERANCE = {torch.float32: (1e-2, 1e-2), torch.bfloat16: (3e-2, 6e-2)}
"""dtype -> (output, gradient) tolerance; see the module docstring."""
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.bfloat16, id="bf16")]
SCALE = 0.37
"""Neither fla's default K^{-1/2} (K = 32 or 64) nor 1, so a scale the adapter drops shows."""


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def case(op: str, dtype: torch.dtype, seq: int = 100, batch: int = 2, heads: int = 2, seed: int = 0):
    """(adapter inputs, reference_dplr inputs as a function of those, reference scale) for one adapter, on CUDA.
    K = 32 and V = 48 (64 and 64 for RWKV-7; K = 64, V = 48 for the delta rules, which take fla only at
    fla_support.DELTA_RULE_KEY_WIDTHS), so a transposed state or value layout shows as a shape error;
    seq = 100 is not a multiple of the kernels' chunks."""
    gen = torch.Generator().manual_seed(seed)
    dk, dv = {"rwkv7": (64, 64), "delta_rule": (64, 48), "gated_delta_rule": (64, 48)}.get(op, (32, 48))

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    q, k, v = randn(batch, seq, heads, dk), randn(batch, seq, heads, dk), randn(batch, seq, heads, dv)
    if op in ("delta_rule", "gated_delta_rule"):
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.rand(batch, seq, heads, generator=gen)
        g = F.logsigmoid(randn(batch, seq, heads) + 2) if op == "gated_delta_rule" else torch.zeros(batch, seq, heads)
        args = [q, k, v, g, beta] if op == "gated_delta_rule" else [q, k, v, beta]

        def to_reference(q, k, v, *rest):
            g, beta = rest if op == "gated_delta_rule" else (torch.zeros_like(rest[0]), rest[0])
            b = beta[..., None]
            return q, b * k, v, g[..., None], k, -(g.exp()[..., None] * b) * k

        return args, to_reference, SCALE
    if op in ("gla", "gla_per_head", "simple_gla"):
        g = F.logsigmoid(randn(batch, seq, heads, dk if op == "gla" else 1)) / 4
        args = [q, k, v, g[..., 0] if op == "simple_gla" else g]
        return args, lambda q, k, v, g: (q, k, v, g if g.dim() == 4 else g[..., None]), SCALE
    assert op == "rwkv7"
    w = -math.exp(-0.5) * torch.sigmoid(randn(batch, seq, heads, dk) - 2)
    kappa = F.normalize(randn(batch, seq, heads, dk), dim=-1)
    rate = torch.rand(batch, seq, heads, dk, generator=gen)
    return [q, w, k, v, -kappa, kappa * rate], lambda r, w, k, v, a, b: (r, k, v, w, a, b), 1.0


def adapter(op: str):
    from zoology.ops.dplr import fla

    return {"gla_per_head": fla.gla, "delta_rule": fla.delta_rule}.get(op) or getattr(fla, op)


GATED = {"gated_delta_rule", "simple_gla"}


@needs_fla
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["delta_rule", "gated_delta_rule", "gla", "gla_per_head", "simple_gla", "rwkv7"])
def test_adapter_equals_the_reference_forward_state_and_every_gradient(op, dtype):
    """Pins each adapter's layout ([B, T, H, ·] in, state [B, H, K, V] out), scale, argument order
    (chunk_gated_delta_rule's (g, beta)) and gate broadcast against reference_dplr."""
    if op in GATED and fla_support.gated_backward_refused():
        pytest.skip("fla refuses this kernel here (Hopper, Triton < 3.7.1); the mixers run the torch path")
    args, to_reference, scale = case(op, dtype)
    device_args = [t.to("cuda", dtype).requires_grad_() for t in args]
    run = adapter(op)
    extra = () if op == "rwkv7" else (scale,)
    o, S = run(*device_args, *extra, final_state=True)
    assert o.shape == (*args[0].shape[:3], args[2 if op != "rwkv7" else 3].shape[-1]) and o.dtype == dtype
    assert S.dtype == torch.float32
    reference_args = [t.detach().double().requires_grad_() for t in device_args]
    o_ref, S_ref = reference_dplr(*to_reference(*reference_args), scale=scale)
    out_tol, grad_tol = TOLERANCE[dtype]
    assert S.shape == S_ref.shape
    assert relative(o, o_ref) <= out_tol and relative(S, S_ref) <= out_tol
    grad_o = torch.randn(o.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = torch.autograd.grad(o, device_args, grad_o.to("cuda", dtype))
    grads_ref = torch.autograd.grad(o_ref, reference_args, grad_o.cuda())
    for i, (got, want) in enumerate(zip(grads, grads_ref)):
        assert relative(got, want) <= grad_tol, f"gradient of argument {i}: {relative(got, want):.2e}"


@needs_fla
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", kernels.MIXERS)
def test_the_mixers_fast_route_equals_its_torch_path_in_output_and_every_gradient(name, dtype):
    """The route training takes on this GPU ("fla", or for a kernel fla refuses here the torch path under
    torch.compile) against the eager torch path with the same weights, d_model 128, batch 16 × 256 (the shapes
    bench kernels compiles for, so a run after it reuses the kernels from the Triton cache)."""
    device = torch.device("cuda")
    route, fast = kernels.fast_route(name, "auto", 128, device)
    if route == "compile":
        assert name == "gated_delta_net" and fla_support.gated_backward_refused()
        assert not fla_support.use_fla("auto", torch.zeros(1, device=device), {"key": 64}, gated=True)
    reference = kernels.build(name, "torch", 128, device)
    x, grad_y = kernels.inputs(16, 256, 128, device)
    out_tol, grad_tol = TOLERANCE[dtype]
    errors = kernels.errors(fast, reference, x, grad_y, dtype)
    assert errors["output"] <= out_tol, errors
    bad = {k: v for k, v in errors.items() if k != "output" and not v <= grad_tol}
    assert not bad, f"{route}: gradients off the reference: {bad}"


@needs_fla
def test_auto_takes_fla_on_cuda_and_fla_is_refused_where_its_kernel_is():
    x, dims = torch.zeros(2, 3, device="cuda", dtype=torch.bfloat16), {"key": 32, "value": 64}
    assert fla_support.use_fla("auto", x, dims) and not fla_support.use_fla("torch", x, dims)
    assert not fla_support.use_fla("auto", x.double(), dims) and not fla_support.use_fla("auto", x.cpu(), dims)
    assert not fla_support.use_fla("auto", x, {"key": 8, "value": 64}), "tl.dot tiles need 16 or more"
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        fla_support.use_fla("fla", x.cpu(), dims)
    from zoology import mixers

    with pytest.raises(ValueError, match=r"needs head widths >= 16, got \{'key': 8\}"):
        mixers.build("gla", d_model=32, backend="fla")

    if fla_support.gated_backward_refused():
        with pytest.raises(ValueError, match="refuses this mixer's kernel on Hopper"):
            mixers.build("gated_delta_net", d_model=64, backend="fla")
    else:
        mixers.build("gated_delta_net", d_model=64, backend="fla")


@needs_fla
def test_pinned_autotuning_never_benchmarks():
    """Under "pinned" no fla autotuner that a second fwd+bwd uses times configurations (Triton sets bench_time
    only when it benchmarks; kernels fla imports during a first call are adopted by the next load)."""
    from zoology.ops.dplr import fla

    fla_support.set_autotune("pinned")
    for seed in (3, 4):
        args, _, _ = case("gla", torch.bfloat16, seq=64 * seed, seed=seed)
        args = [t.cuda().to(torch.bfloat16).requires_grad_() for t in args]
        for tuner in fla_support._autotuners:
            tuner.__dict__.pop("bench_time", None)
        o, _ = fla.gla(*args, SCALE)
        o.sum().backward()
    used = [t for t in fla_support.imported_autotuners() if t.cache]
    assert used and not [t for t in used if hasattr(t, "bench_time")]


def test_pinned_config_is_the_conservative_one_fla_keeps():
    triton = pytest.importorskip("triton")
    configs = [
        triton.Config({"BK": bk, "BV": bv}, num_warps=w, num_stages=s)
        for bk in (32, 64, 128)
        for bv in (32, 64)
        for w in (2, 4, 8)
        for s in (2, 3, 4)
    ]
    (pick,) = fla_support.pinned_config(configs)
    assert (pick.kwargs, pick.num_warps, pick.num_stages) == ({"BK": 64, "BV": 64}, 4, 2)
    (pick,) = fla_support.pinned_config([c for c in configs if c.num_warps == 8 and c.kwargs["BK"] == 32])
    assert (pick.kwargs, pick.num_warps, pick.num_stages) == ({"BK": 32, "BV": 64}, 8, 2)
