"""python -m zoology.bench kernels: the newer mixers' fast paths against their PyTorch reference, and their cost.

For each mixer (--mixers; default the five of zoology.ops.dplr) and dtype (float32; bf16 autocast) the fast
route is built with the same weights as the reference (the mixer with backend="torch", run eagerly: the
chunked recurrence in float32): route "fla" is the mixer with backend="fla" (fla-core's Triton kernels),
"compile" the reference under torch.compile (where fla refuses the mixer's kernel on this device, e.g.
Gated DeltaNet on Hopper with Triton < 3.7.1, and on a CPU), "eager" the reference itself (a timing row).
`--route auto` (default) takes fla where the mixer accepts it, else compile. Printed per mixer and dtype:

- the max relative error (max |fast − reference| / max |reference|) of the output, of the input gradient
  and of every parameter's gradient (the worst one named; --all-grads lists each), at --d-model (128)
  and the first of --shapes (batch 32 × 256), for a fixed random output gradient;
- the fast route's first forward+backward time ("first call": it pays compiling and, with
  ZOOLOGY_FLA_AUTOTUNE=tune, autotuning), at the first shape, before the error check;
- per shape of --shapes (batch x seq: 32x256, and 256x256, the Based Figure 2 training batch) the first
  call at that shape (recompiles where the shape changes a specialisation) and the median steady
  forward+backward ms of the fast route and of the eager reference.

fla's autotuning follows zoology.ops.fla_support ("pinned" unless --autotune tune). --quick: float32
errors only at the small shape, bf16 timed at both, 5 repeats after 1 warm-up.

  python -m zoology.bench kernels --quick                       # ~ minutes on an H200, pinned autotuning
  python -m zoology.bench kernels --mixers gla mamba2 --autotune tune
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from zoology import mixers
from zoology.ops import fla_support
from zoology.utils import pick_device, sync, timings

MIXERS = ("delta_net", "gated_delta_net", "gla", "mamba2", "rwkv7")
ROUTES = ("auto", "fla", "compile", "eager")
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
SHAPES = ("32x256", "256x256")
"""batch x seq: the suite's usual benchmark batch, and the Based Figure 2 training batch."""


def build(name: str, backend: str, d_model: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return mixers.build(name, d_model=d_model, backend=backend).to(device).train()


def fast_route(name: str, route: str, d_model: int, device: torch.device) -> tuple[str, torch.nn.Module]:
    """(route taken, module): the mixer with backend "fla", or the torch backend compiled or eager."""
    if route in ("auto", "fla"):
        try:
            return "fla", build(name, "fla", d_model, device)
        except ValueError:
            if route == "fla":
                raise
    if route == "eager":
        return "eager", build(name, "torch", d_model, device)
    return "compile", torch.compile(build(name, "torch", d_model, device))


def forward_backward(module: torch.nn.Module, x: torch.Tensor, grad_y: torch.Tensor, dtype: torch.dtype):
    """y = module(x) (under autocast for bf16) and its backward with grad_y; gradients accumulate."""
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        y = module(x)
    y.backward(grad_y.to(y.dtype))
    return y


def inputs(batch: int, seq: int, d_model: int, device: torch.device):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, seq, d_model, generator=gen).to(device).requires_grad_()
    return x, torch.randn(batch, seq, d_model, generator=gen).to(device)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


def errors(fast: torch.nn.Module, reference: torch.nn.Module, x, grad_y, dtype) -> dict[str, float]:
    """Max relative error of the output, the input gradient ("grad x") and each parameter's gradient
    ("grad <name>") of `fast` against `reference` (same weights) on x, both forward+backward in `dtype`."""
    results = []
    for module in (fast, reference):
        module.zero_grad(set_to_none=True)
        x.grad = None
        y = forward_backward(module, x, grad_y, dtype)
        grads = {f"grad {n.removeprefix('_orig_mod.')}": p.grad for n, p in module.named_parameters()}
        results.append({"output": y.detach(), "grad x": x.grad.clone(), **grads})
    got, want = results
    return {key: _relative(got[key], want[key]) for key in want}


def _seconds(device: torch.device, fn, *args) -> float:
    sync(device)
    start = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - start


def first_and_steady(module, x, grad_y, dtype, repeats: int, warmup: int) -> tuple[float, float]:
    """(seconds of the first forward+backward at x's shape, median steady ms after `warmup` more)."""
    first = _seconds(x.device, forward_backward, module, x, grad_y, dtype)

    def setup():
        module.zero_grad(set_to_none=True)
        x.grad = None
        return ()

    steady = timings(lambda: forward_backward(module, x, grad_y, dtype), x.device, warmup, repeats, setup=setup)
    return first, 1e3 * statistics.median(steady)


def report(name: str, args, device: torch.device) -> None:
    route, fast = fast_route(name, args.route, args.d_model, device)
    reference = build(name, "torch", args.d_model, device)
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        x, grad_y = inputs(*args.shapes[0], args.d_model, device)
        first_call = _seconds(device, forward_backward, fast, x, grad_y, dtype)
        errs = errors(fast, reference, x, grad_y, dtype)
        grads = {k: v for k, v in errs.items() if k.startswith("grad ") and k != "grad x"}
        worst = max(grads, key=grads.get)
        print(
            f"{name:<16} {dtype_name:<8} {route:<8} errors: output {errs['output']:.1e}  grad x {errs['grad x']:.1e}  "
            f"worst {worst} {grads[worst]:.1e}   first call {first_call:.1f} s",
            flush=True,
        )
        if args.all_grads:
            for key, value in grads.items():
                print(f"{'':<34}{key:<40} {value:.1e}")
        if args.quick and dtype == torch.float32:
            continue
        for batch, seq in args.shapes:
            x, grad_y = inputs(batch, seq, args.d_model, device)
            first, ms = first_and_steady(fast, x, grad_y, dtype, args.repeats, args.warmup)
            _, reference_ms = first_and_steady(reference, x, grad_y, dtype, args.repeats, args.warmup)
            print(
                f"{name:<16} {dtype_name:<8} {route:<8} {batch:>4}x{seq:<6} first call here {first:6.1f} s   "
                f"fwd+bwd {ms:8.2f} ms   eager torch {reference_ms:8.2f} ms",
                flush=True,
            )


def _shape(text: str) -> tuple[int, int]:
    """'32x256' -> (32, 256)."""
    try:
        batch, seq = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BATCHxSEQ, e.g. 32x256") from None
    if batch < 1 or seq < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch and seq must be >= 1")
    return batch, seq


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", nargs="+", default=list(MIXERS), metavar="NAME")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), type=_shape, metavar="BATCHxSEQ")
    parser.add_argument("--route", default="auto", choices=ROUTES)
    parser.add_argument("--autotune", choices=fla_support.AUTOTUNE_MODES, help="fla's autotuning (default: pinned)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5 repeats, 1 warm-up, float32 errors only")
    parser.add_argument("--all-grads", action="store_true", help="print every parameter's gradient error")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 5, 1
    if args.repeats < 1 or args.warmup < 0 or args.d_model < 1:
        parser.error("--repeats and --d-model must be >= 1 and --warmup >= 0")
    args.shapes = [_shape(s) if isinstance(s, str) else s for s in args.shapes]
    unknown = sorted(set(args.mixers) - set(mixers.names()))
    if unknown:
        parser.error(f"unknown mixers {unknown}; registered: {mixers.names()}")
    if args.autotune:
        fla_support.set_autotune(args.autotune)
    device = pick_device(args.device)
    if device.type == "cuda":
        import triton

        where = f"{torch.cuda.get_device_name(device)}, triton {triton.__version__}"
        where += f", fla-core {'installed' if fla_support.installed() else 'missing'}"
        where += ", fla gated kernels refused" if fla_support.gated_backward_refused() else ""
    else:
        where = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"fast route against the eager torch reference, d_model {args.d_model}, on {where}, torch {torch.__version__}; "
        f"fla autotuning {args.autotune or fla_support.autotune_mode()}; median of {args.repeats} after {args.warmup}"
    )
    failed = 0
    for name in args.mixers:
        try:
            report(name, args, device)
        except Exception as e:  # one mixer's failure is reported, the others still run
            failed += 1
            print(f"{name:<16} failed: {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0
