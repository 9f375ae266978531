"""python -m zoology.bench sweep: runs/hour of a sweep with K runs per GPU, or its projected wall time.

For each K in --runs-per-gpu, a fresh Ray instance trains the same configs into a fresh directory,
exactly as `python -m zoology.launch SWEEP -p --runs-per-gpu K` does, with empty compile caches
(TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) so that no K inherits another's compiled kernels; the
clock runs from the first submitted run to the last result (Ray start-up excluded, worker start-up,
compiling and data generation included). The configs are --runs small MQAR models (attention and
BaseConv hybrids from configs/attention.yaml, d_model 64/128, two learning rates, seeds), or a sweep
file's (--sweep, --filter). Needs the `parallel` extra. Without a GPU (or with --device cpu) the runs
share the CPUs instead, --cpus-per-run each.

--subset stratified trains a subset the same way at one K (default 4) and prints the projected time
of every config: each compile shape once for --shape-epochs, every config of --grid-shapes shapes as
the sweep has it (zoology.bench._projection says which and how the times combine). Its compile
caches are those the environment names (--cold-caches: empty ones); --json PATH writes the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from zoology.bench._projection import MeasuredRun, Projection, Subset, SweepRun, project, select_subset
from zoology.config import TrainConfig
from zoology.runner.checks import check_precompile_flag
from zoology.runner.plan import Planned, compile_shape_key, load_sweep, matching, plan
from zoology.runner.ray import Placement, RayOptions


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


def train_timed(
    planned: list[Planned], options: RayOptions, label: str, sweep_dir: Path, precompile: int | None = None
) -> tuple[float, Placement, int]:
    """Train `planned` through the launcher's Ray path on a Ray instance of its own, with the launcher's
    compile warm-ups (`precompile` processes; None: its default): (seconds from the first submitted run
    to the last result, the placement, the number of runs that failed)."""
    import ray

    from zoology.runner.precompile import precompile_for
    from zoology.runner.progress import Progress
    from zoology.runner.ray import placement, run_parallel, start_ray

    where = placement(options, start_ray(options))
    progress = Progress(len(planned), label, sweep_dir)
    started = time.perf_counter()
    precompiler = precompile_for([p.config for p in planned], precompile, options, say=progress.bar.write)
    try:
        run_parallel(planned, options, progress, rerun_before=time.time())
    finally:
        if precompiler is not None:
            precompiler.stop()
        progress.close()
        ray.shutdown()
    return time.perf_counter() - started, where, len(progress.failed)


def use_fresh_caches(directory: Path) -> None:
    """Point TorchInductor and Triton at empty cache directories under `directory` (inherited by Ray's workers)."""
    for variable in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        os.environ[variable] = str(directory / variable.split("_")[0].lower())


def compare_runs_per_gpu(configs: list[TrainConfig], ks: list[int], args, what: str, root: Path) -> int:
    """Train `configs` once per K with fresh caches; print runs/hour per K."""
    rows = []
    for k in ks:
        options = ray_options(args, k)
        use_fresh_caches(root / f"k{k}-caches")
        sweep_dir = root / f"k{k}"
        planned = plan(configs, sweep_dir, force=True)
        wall, where, failed = train_timed(planned, options, f"bench-k{k}", sweep_dir, args.precompile)
        finished = [p.run for p in planned if p.run.is_finished()]
        results = [run.result() for run in finished]
        epochs = [e for run in finished for e in run.metrics()]
        phases = {key: sum(e[key] for e in epochs) / max(1, len(finished)) for key in ("epoch_time", "eval_time")}
        rows.append((k, where, len(results), failed, wall, results, phases))

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


def project_from_subset(configs: list[TrainConfig], k: int, args, what: str, root: Path) -> int:
    """Train the stratified subset of `configs` with K runs per GPU; print (and with --json, write)
    the projected time of all of `configs`."""
    import torch

    if args.cold_caches:
        use_fresh_caches(root / "caches")
    device_type = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    try:
        subset = select_subset(configs, args.shape_epochs, args.grid_shapes, device_type)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    force = args.force or args.runs_dir is None  # a subset in --runs-dir resumes: its finished runs are kept
    parts = {"shape": plan(subset.shape_runs, root / "shapes", force=force)}
    parts["grid"] = plan(subset.grid_runs, root / "grid", force=force)
    everything = [*parts["shape"], *parts["grid"]]
    todo = [p for p in everything if not p.done]
    if len(todo) < len(everything):
        print(f"{len(everything) - len(todo)} of {len(everything)} subset runs finished before in {root}; kept")
    wall, where, failed = train_timed(todo, ray_options(args, k), "bench-subset", root, args.precompile)

    finished = [(part, p) for part, planned in parts.items() for p in planned if p.run.is_finished()]
    measured = [MeasuredRun.read(part, compile_shape_key(p.config), p.run) for part, p in finished]
    projection = project([SweepRun.of(c) for c in configs], measured, where.slots)
    report = {
        "sweep": what,
        "device": ", ".join(sorted({p.run.result()["device"] for _, p in finished})) or "?",
        "runs_at_once": where.slots,
        "runs_per_gpu": k if where.device == "cuda" else None,
        "caches": "fresh, empty (--cold-caches)" if args.cold_caches else "as found",
        "runs_dir": str(root),
        "subset": {
            "shape_runs": len(subset.shape_runs),
            "shape_epochs": args.shape_epochs,
            "grid_shapes": [subset.shape_names[key] for key in subset.grid_shapes],
            "grid_runs": len(subset.grid_runs),
            "failed": failed,
            "kept_from_before": len(everything) - len(todo),
            "wall_s": wall,
            "serial_s": sum(p.run.result()["wall_time"] for _, p in finished),
        },
        **projection_json(projection, subset),
    }
    print_projection(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if failed == 0 and not projection.unmeasured else 1


def projection_json(projection: Projection, subset: Subset) -> dict:
    """The projection's shapes, families and totals as plain JSON (seconds)."""
    shapes = [
        {
            "shape": subset.shape_names[s.shape],
            "family": s.family,
            "runs": s.runs,
            "cold_setup_s": s.cold_setup,
            "train_s_per_epoch": s.train_per_epoch,
            "eval_s_per_epoch": s.eval_per_epoch,
            "warm_setup_s": s.warm_setup,
            "warm_setup_measured": s.warm_measured,
            "epochs": s.epochs,
            "epochs_measured": s.epochs_measured,
            "projected_s": s.projected,
        }
        for s in projection.shapes
    ]
    return {
        "shapes": shapes,
        "families": projection.families(),
        "total": {
            "runs": sum(s.runs for s in projection.shapes),
            "shapes": len(projection.shapes),
            "unmeasured_shapes": [subset.shape_names[key] for key in projection.unmeasured],
            "median_warm_setup_s": projection.median_warm_setup,
            "runs_at_max_epochs_that_may_stop_early": projection.upper_bound_runs,
            "serial_s": projection.serial,
            "wall_s": projection.wall,
        },
    }


def print_projection(report: dict) -> None:
    """The per-family table, the totals in minutes and what the subset itself took."""
    subset, total = report["subset"], report["total"]
    print(
        f"\nsubset of {report['sweep']} on {report['device']}: {subset['shape_runs']} shape runs of "
        f"{subset['shape_epochs']} epochs and {subset['grid_runs']} runs of {', '.join(subset['grid_shapes'])} "
        f"as the sweep has them; {subset['failed']} failed; {subset['kept_from_before']} kept from before; "
        f"{subset['wall_s']:.1f} s wall for the rest, "
        f"{report['runs_at_once']} at a time; caches {report['caches']}; results under {report['runs_dir']}"
    )
    width = max(len("family"), *(len(f["family"]) for f in report["families"]))
    print(f"{'family':<{width}} {'runs':>5} {'shapes':>6} {'cold s':>8} {'s/epoch':>8} {'projected s':>12}")
    for f in report["families"]:
        print(
            f"{f['family']:<{width}} {f['runs']:>5} {f['shapes']:>6} {f['cold_setup_s']:>8.1f} "
            f"{f['s_per_epoch']:>8.2f} {f['projected_s']:>12.1f}"
        )
    cold = sum(f["cold_setup_s"] for f in report["families"])
    print(f"{'total':<{width}} {total['runs']:>5} {total['shapes']:>6} {cold:>8.1f} {'':>8} {total['serial_s']:>12.1f}")
    print(
        f"projected: {total['serial_s'] / 60:.1f} min one run after another, {total['wall_s'] / 60:.1f} min wall at "
        f"{report['runs_at_once']} at a time (per-run times measured with {report['runs_at_once']} runs sharing "
        f"the device); the subset itself: {subset['wall_s'] / 60:.1f} min wall"
    )
    if total["runs_at_max_epochs_that_may_stop_early"]:
        print(
            f"upper bound: {total['runs_at_max_epochs_that_may_stop_early']} runs outside the grid are counted at "
            "max_epochs; early stopping can only shorten them"
        )
    if total["unmeasured_shapes"]:
        print(f"left out (their shape run failed): {', '.join(total['unmeasured_shapes'])}")


def ray_options(args: argparse.Namespace, k: int) -> RayOptions:
    gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    return RayOptions(
        runs_per_gpu=k, cpus_per_run=args.cpus_per_run, gpus=gpus, num_cpus=args.num_cpus, device=args.device
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.bench sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument(
        "--runs-per-gpu", help="comma-separated values of K to compare (default 1,2,4); with --subset one K (default 4)"
    )
    parser.add_argument("--epochs", type=int, help="epochs per run (no early stopping)")
    parser.add_argument("--sweep", help="train this sweep file's configs instead (their epochs unless --epochs)")
    parser.add_argument("--filter", metavar="REGEX", help="with --sweep: only configs whose name matches (re.search)")
    parser.add_argument("--examples", type=int, help="training examples per run (default: the preset's 8000)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0 (default: all)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the Ray instance (default: all)")
    parser.add_argument("--device", choices=("cpu",), help="cpu: compare on CPUs even on a GPU host")
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary directory)")
    parser.add_argument(
        "--precompile", type=int, metavar="N", help="compile warm-up processes (default: as the launcher)"
    )
    subset = parser.add_argument_group("projection (--subset stratified)")
    subset.add_argument(
        "--subset", choices=("stratified",), help="train a subset and project the whole sweep's time from it"
    )
    subset.add_argument("--shape-epochs", type=int, default=2, help="epochs of each shape's run (default 2)")
    subset.add_argument("--grid-shapes", type=int, default=2, help="shapes trained at every config (default 2)")
    subset.add_argument("--cold-caches", action="store_true", help="start from empty compile caches")
    subset.add_argument("--json", metavar="PATH", help="also write the projection as JSON")
    subset.add_argument("--force", action="store_true", help="with --runs-dir: retrain the subset runs finished there")
    args = parser.parse_args(argv)
    check_precompile_flag(args.precompile)

    from zoology.runner.ray import require_ray

    require_ray()
    try:
        ks = [int(k) for k in (args.runs_per_gpu or ("4" if args.subset else "1,2,4")).split(",")]
    except ValueError:
        raise SystemExit(f"--runs-per-gpu={args.runs_per_gpu!r}: give whole numbers like 1,4") from None
    if args.subset and len(ks) != 1:
        raise SystemExit(f"--subset trains at one K: give one --runs-per-gpu, not {args.runs_per_gpu}")
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
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="zoology-bench-sweep-"))
    if args.subset:
        return project_from_subset(configs, ks[0], args, what, root)
    return compare_runs_per_gpu(configs, ks, args, what, root)
