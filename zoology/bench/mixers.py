"""python -m zoology.bench mixers: forward+backward time of every registered mixer (and any named).

Each mixer is built with its defaults at --d-model (a --mixer SPEC adds kwargs, e.g.
`sliding_window:window_size=16`), in training mode; one timed repeat is forward(x) then backward of
a fixed random output gradient, for x of shape (batch, seq-len, d-model). Reports the median and the
best of --repeats after --warmup untimed ones.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from zoology import mixers
from zoology.utils import pick_device, timings


def time_mixer(
    spec: str,
    d_model: int,
    batch: int,
    seq_len: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    bf16: bool,
) -> dict:
    """{'mixer', 'params', 'state', 'median_ms', 'best_ms', 'tokens_per_s'} for one mixer spec."""
    name, kwargs = mixers.parse_spec(spec)
    torch.manual_seed(0)
    mixer = mixers.build(name, d_model=d_model, layer_idx=0, **kwargs).to(device).train()
    x = torch.randn(batch, seq_len, d_model, device=device, requires_grad=True)
    grad = torch.randn(batch, seq_len, d_model, device=device)

    def clear_grads():
        mixer.zero_grad(set_to_none=True)
        x.grad = None
        return ()

    def forward_backward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = mixer(x)
        y.backward(grad.to(y.dtype))

    times = timings(forward_backward, device, warmup, repeats, setup=clear_grads)
    median = statistics.median(times)
    return {
        "mixer": spec,
        "params": sum(p.numel() for p in mixer.parameters()),
        "state": mixer.state_size(seq_len),
        "median_ms": 1e3 * median,
        "best_ms": 1e3 * min(times),
        "tokens_per_s": batch * seq_len / median,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench mixers", description=__doc__)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, …")
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast")
    parser.add_argument(
        "--mixer",
        action="append",
        default=[],
        metavar="SPEC",
        help="also time this mixer (dotted path or name, with optional :key=value kwargs); repeatable",
    )
    parser.add_argument("--only", nargs="+", metavar="SPEC", help="time only these mixers")
    args = parser.parse_args(argv)
    for field in ("d_model", "batch", "seq_len", "repeats"):
        if getattr(args, field) < 1:
            parser.error(f"--{field.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")

    device = pick_device(args.device)
    specs = args.only or [*mixers.names(), *args.mixer]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"forward+backward per batch: d_model={args.d_model} batch={args.batch} seq_len={args.seq_len} "
        f"{'bf16 autocast' if args.bf16 else 'float32'} on {where}, torch {torch.__version__}; "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    header = f"{'mixer':<32} {'params':>10} {'state/seq':>10} {'median ms':>10} {'best ms':>10} {'tokens/s':>12}"
    print(header)
    print("-" * len(header))
    failed = 0
    for spec in specs:
        try:
            r = time_mixer(spec, args.d_model, args.batch, args.seq_len, device, args.repeats, args.warmup, args.bf16)
        except Exception as e:
            failed += 1
            print(f"{spec:<32} failed: {type(e).__name__}: {e}")
            continue
        print(
            f"{r['mixer']:<32} {r['params']:>10,} {r['state']:>10,} {r['median_ms']:>10.2f} "
            f"{r['best_ms']:>10.2f} {r['tokens_per_s']:>12,.0f}",
            flush=True,
        )
    return 1 if failed else 0
