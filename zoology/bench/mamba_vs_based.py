"""python -m zoology.bench mamba_vs_based: Mamba-lite's forward+backward time against Based's.

Both mixers are built with their defaults at --d-model and timed as in `python -m zoology.bench
mixers` (training mode, forward then backward of a fixed output gradient, synchronised on CUDA),
alternating between the two for --rounds rounds so that a change in machine load hits both; prints
each round's medians, the median over rounds and the ratio mamba / based (the target is <= 4).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from zoology import mixers
from zoology.bench.mixers import time_mixer
from zoology.utils import pick_device


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
    medians: dict[str, list[float]] = {args.mamba: [], args.based: []}
    for round_ in range(args.rounds):
        for spec in medians:
            r = time_mixer(spec, args.d_model, args.batch, args.seq_len, device, args.repeats, args.warmup, args.bf16)
            medians[spec].append(r["median_ms"])
            print(f"round {round_ + 1}: {spec:<24} median {r['median_ms']:9.2f} ms   best {r['best_ms']:9.2f} ms")
    mamba_ms, based_ms = (statistics.median(medians[s]) for s in (args.mamba, args.based))
    print(f"{args.mamba}: {mamba_ms:.2f} ms   {args.based}: {based_ms:.2f} ms   ratio {mamba_ms / based_ms:.2f}")
    return 0
