"""python -m zoology.bench mamba_vs_based: Mamba-lite's forward+backward time against Based's.

Both mixers are built with their defaults at --d-model and timed as in `python -m zoology.bench
mixers` (training mode, forward then backward of a fixed output gradient, synchronised on CUDA),
alternating between the two for --rounds rounds so that a change in machine load hits both; prints
each round's medians, the median over rounds and the ratio mamba / based (the target is <= 4).

On CUDA with triton, Mamba scans with the Triton kernels; first the scan alone (float32 inputs of the
mixer's shapes, as under autocast) is checked against the chunked PyTorch scan (max relative error of y,
h_last and every gradient) and both are timed forward+backward; --scan-sweep also times other Triton
block sizes, warps and pipeline stages.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from zoology import mixers
from zoology.bench.mixers import time_mixer
from zoology.ops.selective_scan import selective_scan, triton_available
from zoology.ops.selective_scan.triton import triton_config, triton_scan
from zoology.utils import pick_device, timings

SWEEP = [
    (block_d, warps, stages, chunk)
    for block_d in (16, 32, 64)
    for warps in (1, 2, 4)
    for stages in (3,)
    for chunk in (4, 8, 16, 32)
]


def scan_inputs(seq: int, batch: int, d_in: int, d_state: int, device: torch.device) -> list[torch.Tensor]:
    """x, δ, A, B, C as Mamba makes them at initialisation: δ ∈ [1e-3, 1e-1], A = −(1 … N)."""
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(seq, batch, d_in, device=device, generator=gen)
    delta = torch.exp(torch.empty(seq, batch, d_in, device=device).uniform_(-6.9, -2.3, generator=gen))
    A = -torch.arange(1, d_state + 1, device=device, dtype=torch.float32).repeat(d_in, 1)
    B, C = (torch.randn(seq, batch, d_state, device=device, generator=gen) for _ in range(2))
    return [t.requires_grad_() for t in (x, delta, A, B, C)]


def scan_discrepancy(inputs: list[torch.Tensor]) -> dict[str, float]:
    """Max |triton − chunked torch| / max |chunked torch| of y, h_last and the gradients of x, δ, A, B, C."""
    results = []
    for backend in ("triton", "torch"):
        y, h = selective_scan(*inputs, backend=backend)
        grad_y = torch.randn(y.shape, device=y.device, generator=torch.Generator(y.device).manual_seed(1))
        results.append((y, h, *torch.autograd.grad(y, inputs, grad_y)))
    names = ("y", "h_last", "dx", "dδ", "dA", "dB", "dC")
    return {n: ((a - b).abs().max() / b.abs().max()).item() for n, a, b in zip(names, *results)}


def time_scan(scan, inputs: list[torch.Tensor], repeats: int, warmup: int) -> float:
    """Median ms of scan(*inputs) forward then backward of a fixed output gradient."""
    grad_y = torch.ones_like(inputs[0])
    times = timings(lambda: torch.autograd.grad(scan(*inputs)[0], inputs, grad_y), inputs[0].device, warmup, repeats)
    return 1e3 * statistics.median(times)


def triton_scan_with(block_d: int, num_warps: int, stages: int, chunk: int = 16):
    return lambda *inputs: triton_scan(*inputs, block_d, num_warps, stages, chunk)


def report_scan(args, device: torch.device) -> None:
    """Print the Triton scan's discrepancy from the chunked scan and both scans' forward+backward times."""
    name, kwargs = mixers.parse_spec(args.mamba)
    mamba = mixers.build(name, d_model=args.d_model, layer_idx=0, **kwargs)
    d_in, d_state = mamba.d_inner, mamba.d_state
    inputs = scan_inputs(args.seq_len, args.batch, d_in, d_state, device)
    errors = "  ".join(f"{name} {error:.1e}" for name, error in scan_discrepancy(inputs).items())
    print(f"scan (seq {args.seq_len}, batch {args.batch}, d_in {d_in}, N {d_state}) triton vs chunked: {errors}")
    label = "triton, block_d {}, {} warps, {} stages, chunk {}"
    scans = {
        "chunked torch": lambda *inputs: selective_scan(*inputs, backend="torch"),
        label.format(*triton_config(d_in, d_state), 16) + " (default)": triton_scan_with(*triton_config(d_in, d_state)),
    }
    if args.scan_sweep:
        scans.update({label.format(*config): triton_scan_with(*config) for config in SWEEP})
    for label, scan in scans.items():
        print(f"scan fwd+bwd {time_scan(scan, inputs, args.repeats, args.warmup):9.3f} ms  {label}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench mamba_vs_based", description=__doc__)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per mixer and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, …")
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast")
    parser.add_argument("--mamba", default="mamba", metavar="SPEC", help="the Mamba spec (e.g. mamba:d_state=8)")
    parser.add_argument("--based", default="based", metavar="SPEC", help="the Based spec")
    parser.add_argument("--scan-sweep", action="store_true", help="also time other Triton scan configurations")
    args = parser.parse_args(argv)
    for field in ("d_model", "batch", "seq_len", "rounds", "repeats"):
        if getattr(args, field) < 1:
            parser.error(f"--{field.replace('_', '-')} must be >= 1")
    for spec in (args.mamba, args.based):
        try:
            mixers.resolve(mixers.parse_spec(spec)[0])
        except ValueError as e:
            parser.error(str(e))

    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"forward+backward per batch: d_model={args.d_model} batch={args.batch} seq_len={args.seq_len} "
        f"{'bf16 autocast' if args.bf16 else 'float32'} on {where}, torch {torch.__version__}"
    )
    if device.type == "cuda" and triton_available():
        report_scan(args, device)
    medians: dict[str, list[float]] = {args.mamba: [], args.based: []}
    for round_ in range(args.rounds):
        for spec in medians:
            r = time_mixer(spec, args.d_model, args.batch, args.seq_len, device, args.repeats, args.warmup, args.bf16)
            medians[spec].append(r["median_ms"])
            print(f"round {round_ + 1}: {spec:<24} median {r['median_ms']:9.2f} ms   best {r['best_ms']:9.2f} ms")
    mamba_ms, based_ms = (statistics.median(medians[s]) for s in (args.mamba, args.based))
    print(f"{args.mamba}: {mamba_ms:.2f} ms   {args.based}: {based_ms:.2f} ms   ratio {mamba_ms / based_ms:.2f}")
    return 0
