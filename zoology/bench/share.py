"""python -m zoology.bench share: how much of a GPU one training run leaves to others.

Two measurements of the captured training step (forward, backward, AdamW; bf16 autocast; compiled
with --compile) on one MQAR batch shape, over an epoch of --steps batches after one of warm-up:

- batch scaling: ms per step at each --batches size. If a step of 4B examples costs about 4 times a
  step of B, one run of batch B already keeps the GPU busy and no way of sharing it (threads,
  processes, or K runs stacked into one batch) can train K runs much faster than one after another.
- runs side by side: K copies of the run (their own weights and optimiser) replaying their steps in
  K threads, each on its own CUDA stream, as the launcher's GPU workers do; steps/s summed over the
  K runs against one run alone is the most packing K runs per GPU can gain while they train.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

from zoology.config import TrainConfig
from zoology.data import Batches, DeviceSegment
from zoology.data.mqar import MQARConfig
from zoology.model import LanguageModel
from zoology.training.capture import run_stream
from zoology.training.step import TrainStep
from zoology.utils import pick_device


def build_step(model_config, args, batch: int, device, seed: int) -> tuple[TrainStep, Batches]:
    """A resident, captured TrainStep of a fresh model on one MQAR segment of `args.steps` batches."""
    torch.manual_seed(seed)
    model = LanguageModel(model_config, max_seq_len=args.seq_len).to(device)
    optimizer = torch.optim.AdamW(
        model.param_groups(0.1), lr=torch.tensor(1e-3, device=device), fused=True, capturable=True
    )
    data = MQARConfig(
        vocab_size=model_config.vocab_size,
        input_seq_len=args.seq_len,
        num_kv_pairs=args.num_kv_pairs,
        num_examples=batch * args.steps,
    )
    segments = [DeviceSegment.from_segment(data.build(seed=seed), device)]
    step = TrainStep(
        model,
        optimizer,
        lambda _: 1e-3,
        "bf16",
        None,
        cuda_graphs=True,
        compile=args.compile,
        batch_size=batch,
        segments=segments,
        total_steps=2 * args.steps,
    )
    return step, Batches(segments, batch, shuffle=True, seed=seed)


def side_by_side(model_config, k: int, batch: int, args, device) -> float:
    """Steps per second summed over k runs of `batch` that replay their steps at once, each in its own thread."""
    ready = threading.Barrier(k + 1)
    done = threading.Barrier(k + 1)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with run_stream(device):
                step, batches = build_step(model_config, args, batch, device, seed=i)
                for epoch in range(2):
                    if epoch:
                        ready.wait()
                    step.run_epoch(batches, epoch, epoch * args.steps)
                    torch.cuda.current_stream(device).synchronize()
                step.release()
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            ready.abort()
            done.abort()
            return
        done.wait()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    done.wait()
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return k * args.steps / wall


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench share", description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["based_figure2"], help="presets whose models to time")
    parser.add_argument("--d-model", type=int, nargs="+", default=[128])
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--num-kv-pairs", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256, help="batch of the runs side by side")
    parser.add_argument("--batches", default="64,256,1024", help="batch sizes of the scaling table")
    parser.add_argument("--runs", default="1,2,4", help="numbers of runs side by side")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--compile", action="store_true", help="compile forward and loss (the default for long runs)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if device.type != "cuda":
        raise SystemExit("bench share measures CUDA streams and graphs: it needs a GPU")
    batches = [int(b) for b in args.batches.split(",") if b]
    ks = [int(k) for k in args.runs.split(",") if k]
    print(
        f"{torch.cuda.get_device_name(device)}; MQAR L={args.seq_len} N={args.num_kv_pairs} V={args.vocab_size}; "
        f"bf16, CUDA graphs{', compiled' if args.compile else ''}; {args.steps} timed steps"
    )
    print("| model | d | batch | ms/step | examples/ms | time x first batch |")
    print("| --- | --: | --: | --: | --: | --: |")
    share_rows = []
    for preset in args.model:
        for d in args.d_model:
            update = {"d_model": d, "vocab_size": args.vocab_size}
            model_config = TrainConfig.from_yaml(preset).model.model_copy(update=update)
            first_ms = None
            for b in batches:
                ms = 1e3 / side_by_side(model_config, 1, b, args, device)
                first_ms = first_ms or ms
                print(f"| {preset} | {d} | {b} | {ms:.3f} | {b / ms:,.0f} | {ms / first_ms:.2f} |", flush=True)
            alone = None
            for k in ks:
                rate = side_by_side(model_config, k, args.batch, args, device)
                alone = alone or rate / k
                share_rows.append((preset, d, k, rate, rate / alone))
    print(f"\nruns side by side (threads, a CUDA stream each), batch {args.batch}:")
    print("| model | d | runs | steps/s (all runs) | x one run |")
    print("| --- | --: | --: | --: | --: |")
    for preset, d, k, rate, gain in share_rows:
        print(f"| {preset} | {d} | {k} | {rate:,.0f} | {gain:.2f} |")
    return 0
