"""python -m zoology.bench train: seconds per training epoch against the hardware floor.

Trains a model preset on a data preset (default: the Based Figure 2 data) for a few epochs with the
fast path (bf16 autocast, torch.compile and CUDA graphs on GPU; compiled even
for these short runs) and, with --compare, the plain fp32 eager path, and
prints s/epoch, tokens/s, validation accuracy per epoch and the floor: the larger of
(FLOPs of one epoch / measured matmul rate) and (a lower bound on bytes moved / measured copy rate).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoology.config import TrainConfig, add_set_flag
from zoology.data import Batches
from zoology.model import LanguageModel
from zoology.training import Callbacks, train
from zoology.training.loop import load_segments
from zoology.training.step import autocast, query_loss
from zoology.utils import copy_rate, pick_device, timings


def bench_config(model_preset: str, data_preset: str, d_model: int | None, epochs: int, overrides: list[str]):
    data = TrainConfig.from_yaml(data_preset)
    model = TrainConfig.from_yaml(model_preset).model.model_dump()
    model["vocab_size"] = data.model.vocab_size
    if d_model:
        model["d_model"] = d_model
    config = data.set({"model": model, "max_epochs": epochs, "early_stopping_threshold": None})
    return TrainConfig.from_yaml_dict(config.model_dump(mode="json"), overrides) if overrides else config


def device_rates(device: torch.device) -> tuple[float, float]:
    """Measured (matmul FLOP/s in the training dtype, copy bytes/s) of this device."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds = sum(timings(lambda: a @ b, device, warmup=1, repeats=10)) / 10
    return 2 * n**3 / seconds, copy_rate(device)


def epoch_floor(config: TrainConfig, device: torch.device) -> dict:
    """FLOPs of one epoch (counted on one step per batch shape) and a lower bound on its bytes."""
    segments = load_segments(config, "train", device)
    batches = Batches(segments, config.data.batch_size, shuffle=False, seed=0)
    model = LanguageModel(config.model, max_seq_len=config.data.max_seq_len).to(device)
    precision = config.resolved_precision(device)
    shapes = Counter()
    example = {}
    for _, inputs, positions, targets in batches.epoch(0):
        key = (tuple(inputs.shape), tuple(positions.shape))
        shapes[key] += 1
        example.setdefault(key, (inputs, positions, targets))
    flops = 0
    for key, count in shapes.items():
        counter = FlopCounterMode(display=False)
        with counter, autocast(device, precision):
            query_loss(model(*example[key][:2]), example[key][2]).backward()
        flops += counter.get_total_flops() * count
    act_bytes = 2 if precision == "bf16" else 4
    d, n_layers, vocab = config.model.d_model, config.model.n_layers, config.model.vocab_size
    tokens = sum(s.inputs.numel() for s in segments)
    queries = sum(s.positions.numel() for s in segments)
    steps = sum(shapes.values())
    params = model.num_parameters()
    bytes_moved = tokens * d * n_layers * act_bytes * 6 + queries * vocab * act_bytes * 3 + steps * params * 4 * 7
    return {"flops": flops, "bytes": bytes_moved, "steps": steps, "tokens": tokens}


def run(config: TrainConfig, fast: bool) -> dict:
    if not fast:
        config = config.set({"precision": "fp32", "cuda_graphs": False, "compile": False, "name": config.name})
    elif config.compile == "auto":
        config = config.set({"compile": pick_device(config.device).type == "cuda", "name": config.name})
    epochs = []
    train(config, Callbacks(on_epoch=epochs.append))
    times = [e["epoch_time"] for e in epochs]
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    evals = [e["eval_time"] for e in epochs]
    steady_eval = statistics.median(evals[1:]) if len(evals) > 1 else evals[0]
    accs = [e["valid_acc"] for e in epochs]
    return {"first": times[0], "steady": steady, "eval_first": evals[0], "eval": steady_eval, "acc": accs}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="based_figure2", help="preset whose model to train")
    parser.add_argument("--data", default="based_figure2", help="preset whose data and schedule to use")
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run the plain fp32 eager path")
    parser.add_argument("--device", default="auto")
    add_set_flag(parser)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    config = bench_config(args.model, args.data, args.d_model, args.epochs, args.overrides + [f"device={device}"])
    floor = epoch_floor(config, device)
    flop_rate, byte_rate = device_rates(device)
    floor_s = max(floor["flops"] / flop_rate, floor["bytes"] / byte_rate)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{config.name} on {name}: {floor['steps']} steps, {floor['tokens'] / 1e6:.1f} M tokens per epoch")
    flop_s, byte_s = floor["flops"] / flop_rate, floor["bytes"] / byte_rate
    print(f"floor: {floor['flops'] / 1e12:.2f} TFLOP at {flop_rate / 1e12:.2f} TFLOP/s = {flop_s:.3f} s; ", end="")
    print(f">= {floor['bytes'] / 1e9:.1f} GB at {byte_rate / 1e9:.0f} GB/s = {byte_s:.3f} s")
    rows = [("fast", run(config, fast=True))]
    if args.compare:
        rows.append(("plain fp32", run(config, fast=False)))
    print("\n| path | s/epoch (steady) | first epoch s | eval s (first, steady) | tokens/s | x floor |", end="")
    print(" valid acc by epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, r in rows:
        accs = " ".join(f"{a:.3f}" for a in r["acc"])
        print(
            f"| {label} | {r['steady']:.2f} | {r['first']:.2f} | {r['eval_first']:.2f}, {r['eval']:.2f} |"
            f" {floor['tokens'] / r['steady']:,.0f} | {r['steady'] / floor_s:.1f} | {accs} |"
        )
    return 0
