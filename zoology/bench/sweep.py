"""python -m zoology.bench sweep: runs/hour of a sweep with K runs per GPU.

For each K in --runs-per-gpu, a fresh Ray instance trains the same configs into a fresh directory,
exactly as `python -m zoology.launch SWEEP -p --runs-per-gpu K` does, with empty compile caches
(TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) so that no K inherits another's compiled kernels; the
clock runs from the first submitted run to the last result (Ray start-up excluded, worker start-up,
compiling and data generation included). The configs are --runs small MQAR models (attention and
BaseConv hybrids from configs/attention.yaml, d_model 64/128, two learning rates, seeds), or a sweep
file's (--sweep, --filter). Needs the `parallel` extra. Without a GPU (or with --device cpu) the runs
share the CPUs instead, --cpus-per-run each.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

from zoology.config import TrainConfig


def sweep_configs(runs: int, epochs: int, examples: int | None) -> list[TrainConfig]:
    base = TrainConfig.from_yaml("attention").set({"max_epochs": epochs, "early_stopping_threshold": None})
    if examples is not None:
        base = base.set({"data.train.0.num_examples": examples, "data.test.0.num_examples": max(64, examples // 16)})
    grid = (
        (seed, mixer, d_model, lr)
        for seed in itertools.count()
        for mixer in ("attention", "base_conv")
        for d_model in (64, 128)
        for lr in (1e-3, 3e-3)
    )
    configs = []
    for seed, mixer, d_model, lr in itertools.islice(grid, runs):
        update = {"model.mixers.1.name": mixer, "model.mixers.1.kwargs": {}, "model.d_model": d_model, "lr": lr}
        configs.append(base.set({**update, "seed": seed}))
    return configs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--runs-per-gpu", default="1,2,4", help="comma-separated values of K to compare")
    parser.add_argument("--epochs", type=int, help="epochs per run (no early stopping)")
    parser.add_argument("--sweep", help="train this sweep file's configs instead (their epochs unless --epochs)")
    parser.add_argument("--filter", metavar="REGEX", help="with --sweep: only configs whose name matches (re.search)")
    parser.add_argument("--examples", type=int, help="training examples per run (default: the preset's 8000)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0 (default: all)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the Ray instance (default: all)")
    parser.add_argument("--device", choices=("cpu",), help="cpu: compare on CPUs even on a GPU host")
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args(argv)

    from zoology.runner.plan import load_sweep, matching, plan
    from zoology.runner.progress import Progress
    from zoology.runner.ray import RayOptions, placement, require_ray, run_parallel, start_ray

    require_ray()
    import ray

    ks = [int(k) for k in args.runs_per_gpu.split(",")]
    if args.filter and not args.sweep:
        raise SystemExit("--filter selects among a sweep file's configs: give --sweep FILE too")
    if args.sweep:
        configs = matching(load_sweep(args.sweep), args.filter)
        if args.epochs is not None:
            configs = [c.set({"max_epochs": args.epochs, "early_stopping_threshold": None}) for c in configs]
        what = f"{args.sweep}" + (f" --filter={args.filter}" if args.filter else "")
    else:
        configs = sweep_configs(args.runs, args.epochs or 8, args.examples)
        what = f"{args.epochs or 8} epochs each of MQAR, configs/attention.yaml, d_model 64/128"
    if not configs:
        raise SystemExit(f"no configs in {args.sweep} match --filter={args.filter}")
    gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="zoology-bench-sweep-"))
    rows = []
    for k in ks:
        options = RayOptions(
            runs_per_gpu=k, cpus_per_run=args.cpus_per_run, gpus=gpus, num_cpus=args.num_cpus, device=args.device
        )
        for variable in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
            os.environ[variable] = str(root / f"k{k}-caches" / variable.split("_")[0].lower())
        resources = start_ray(options)
        where = placement(options, resources)
        sweep_dir = root / f"k{k}"
        planned = plan(configs, sweep_dir, force=True)
        progress = Progress(len(planned), f"bench-k{k}", sweep_dir)
        started = time.perf_counter()
        try:
            run_parallel(planned, options, progress, rerun_before=time.time())
        finally:
            progress.close()
            ray.shutdown()
        wall = time.perf_counter() - started
        finished = [p.run for p in planned if p.run.is_finished()]
        results = [run.result() for run in finished]
        epochs = [e for run in finished for e in run.metrics()]
        phases = {key: sum(e[key] for e in epochs) / max(1, len(finished)) for key in ("epoch_time", "eval_time")}
        rows.append((k, where, len(results), len(progress.failed), wall, results, phases))

    devices = sorted({r["device"] for *_, results, _ in rows for r in results})
    print(f"\n{len(configs)} runs ({what}) on {', '.join(devices) or '?'}; results under {root}")
    print(
        f"{'runs/GPU':>8} {'at once':>7} {'done':>5} {'failed':>6} {'wall s':>8} {'runs/hour':>10} "
        f"{'mean run s':>10} {'train s':>8} {'eval s':>7} {'x of first':>10}"
    )
    first_rate = None
    for k, where, done, failed, wall, results, phases in rows:
        mean_run = sum(r["wall_time"] for r in results) / len(results) if results else float("nan")
        label = str(k) if where.device == "cuda" else "cpu"
        rate = done / wall * 3600
        first_rate = first_rate or rate
        print(
            f"{label:>8} {where.slots:>7} {done:>5} {failed:>6} {wall:>8.1f} {rate:>10.0f} {mean_run:>10.1f} "
            f"{phases['epoch_time']:>8.1f} {phases['eval_time']:>7.2f} {rate / first_rate:>10.2f}"
        )
    return 0 if all(failed == 0 for _, _, _, failed, *_ in rows) else 1
