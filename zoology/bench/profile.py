"""python -m zoology.bench profile: where one training step's time goes (top kernels/operators).

Profiles fwd+bwd+AdamW of a model preset on one batch of MQAR at (batch, seq_len) with the
training precision (bf16 autocast on CUDA) and prints the operators ranked by device time.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from zoology.config import TrainConfig, add_set_flag
from zoology.data import DeviceSegment
from zoology.data.mqar import MQARConfig
from zoology.model import LanguageModel
from zoology.training.step import autocast, query_loss
from zoology.utils import pick_device


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="based_figure2", help="preset whose model to profile")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--num-kv-pairs", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument(
        "--compile", action="store_true", help="profile the compiled forward and loss, as training runs it"
    )
    add_set_flag(parser, "model.mixers.0.kwargs.d_state=8")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    config = TrainConfig.from_yaml(args.model, args.overrides)
    model_config = config.model.model_copy(update={"d_model": args.d_model, "vocab_size": args.vocab_size})
    model = LanguageModel(model_config, max_seq_len=args.seq_len).to(device)
    precision = config.set({"precision": args.precision}).resolved_precision(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))
    data = MQARConfig(
        vocab_size=args.vocab_size, input_seq_len=args.seq_len, num_kv_pairs=args.num_kv_pairs, num_examples=args.batch
    )
    seg = DeviceSegment.from_segment(data.build(seed=0), device)

    def loss_of(inputs, positions, targets):
        with autocast(device, precision):
            return query_loss(model(inputs, positions), targets)

    loss_fn = torch.compile(loss_of, dynamic=False) if args.compile else loss_of

    def step() -> None:
        loss_fn(seg.inputs, seg.positions, seg.targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(5):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    how = "compiled" if args.compile else "eager"
    print(f"{model_config.mixers} d={args.d_model} batch={args.batch} L={args.seq_len} {precision} {how} on {device}")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA) / 5
    if device.type == "cuda":
        print(f"device kernels per step: {kernels:.0f}")
    return 0
