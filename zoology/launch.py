"""Run a sweep: `python -m zoology.launch sweeps/mqar.py [-p]`.

A sweep file is plain Python defining `configs = [TrainConfig(...), ...]`. Each run writes to
<runs-dir>/<sweep>/<run_id>/; runs with a result.json are skipped unless --force. A run that
raises (or, under -p, whose worker dies) leaves error.txt with its reason; the others go on and
the exit code is 1.

Runs train one after another in this process, or with -p on Ray workers: on all GPUs of this host
(--runs-per-gpu K runs share a GPU, in threads of one worker), on its CPUs (--cpus-per-run), or on a
Ray cluster (--address). Under -p the workers return each run's metrics and result to this process, which
writes the run directory: workers need no shared file system, only zoology (and any user mixer
module) importable.

Each run is locked while it trains (<run>/.lock, see zoology.runner.locks), so two launchers on the
same sweep never train the same config twice; a launcher that is killed holds nothing afterwards.
Launching again after an interruption resumes: finished runs are kept, unfinished ones restart.

Runs that compile their training step share on-disk compile caches: before training, --precompile N
processes warm them for each model shape of the pending runs (zoology.runner.precompile), in the
background, so the runs find their graphs compiled (default on a GPU host: half the CPUs, at most 8;
0: off; not with --address).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from zoology.config import LoggerConfig
from zoology.errors import UserError, add_debug_flag, cli_main
from zoology.runner.checks import check_device_flag, check_devices, check_precompile_flag, check_runs_dir
from zoology.runner.claims import remove_stale_temps
from zoology.runner.plan import (
    Planned,
    compile_filter,
    load_sweep,
    matching,
    no_match_message,
    plan,
    print_plan,
    report_damaged,
)
from zoology.runner.precompile import Precompiler, precompile_for
from zoology.runner.progress import Progress, print_summary, summary_table
from zoology.runner.rundir import write_sweep_order
from zoology.runner.sequential import run_sequential

EXIT_GRACE_S = 30.0
"""Once interrupted, the launcher ends within this many seconds (ZOOLOGY_EXIT_GRACE_S overrides it)."""


def exit_within_grace(code: int = 130) -> None:
    """After an interruption, end the process with `code` within the grace period, even where threads
    this process does not own (a compiler's workers, say) would keep it alive. Nothing is lost: run
    directories are written atomically and a cut-off run resumes from its checkpoint."""

    def end() -> None:
        print(f"\nthe launcher did not end within {grace:g}s of the interruption; exiting", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    if any(isinstance(t, threading.Timer) and t.name == "exit-within-grace" for t in threading.enumerate()):
        return  # armed already (SIGTERM arms it, and the interruption it raises would again)
    try:
        grace = float(os.environ.get("ZOOLOGY_EXIT_GRACE_S", EXIT_GRACE_S))
    except ValueError:
        grace = EXIT_GRACE_S
    timer = threading.Timer(grace, end)
    timer.name = "exit-within-grace"
    timer.daemon = True
    timer.start()


def _raise_keyboard_interrupt(signum, frame) -> None:
    exit_within_grace()
    raise KeyboardInterrupt


def start_precompile(args: argparse.Namespace, ray_options, todo: list[Planned], progress) -> Precompiler | None:
    """The --precompile warm-ups of the pending runs, started in the background (None when off)."""

    def warn_line(message: str) -> None:
        progress.bar.write(f"warning: {message}", file=sys.stderr)

    return precompile_for(
        [p.config for p in todo], args.precompile, ray_options, args.device, warn_line, progress.bar.write
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoology.launch",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("sweep", help="a Python file defining `configs`")
    parser.add_argument("--runs-dir", default="runs", help="results go to RUNS_DIR/<sweep name>/ (default: runs)")
    parser.add_argument("--name", help="sweep name (default: the sweep file's stem)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument(
        "--filter", metavar="REGEX", help="only runs whose name matches (re.search: anywhere; anchor with ^ and $)"
    )
    parser.add_argument("--device", help="override every config's device (e.g. cpu, cuda:1; with -p only cpu)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan with estimated times and exit")
    ray_args = parser.add_argument_group("parallel runs on Ray (pip install 'zoology[parallel]')")
    ray_args.add_argument("-p", "--parallel", action="store_true", help="run configs on Ray workers")
    ray_args.add_argument(
        "--runs-per-gpu", type=int, default=1, metavar="K", help="runs training at once on one GPU (default: 1)"
    )
    ray_args.add_argument(
        "--cpus-per-run", type=float, default=1.0, metavar="N", help="CPUs (torch threads) per run (default: 1)"
    )
    ray_args.add_argument("--gpus", metavar="IDS", help="GPUs a local Ray instance may use, e.g. 0,1 (default: all)")
    ray_args.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of a local Ray instance (default: all)")
    ray_args.add_argument(
        "--address", help="join this Ray cluster (auto, or host:6379; default: RAY_ADDRESS, else start one here)"
    )
    parser.add_argument(
        "--precompile",
        type=int,
        metavar="N",
        help="warm the compile caches for each model shape in N processes while the sweep trains "
        "(default on a GPU host: half the CPUs, at most 8; 0: off)",
    )
    wandb_args = parser.add_argument_group("Weights & Biases (pip install 'zoology[wandb]'); overrides configs' logger")
    wandb_args.add_argument("--wandb-project", metavar="NAME", help="log every run to this W&B project")
    wandb_args.add_argument("--wandb-entity", metavar="NAME")
    wandb_args.add_argument("--wandb-group", metavar="NAME", help="default: the sweep name")
    wandb_args.add_argument("--wandb-mode", choices=("online", "offline", "disabled"))
    add_debug_flag(parser)
    given = sys.argv[1:] if argv is None else argv
    for flag, value in zip(given, given[1:]):
        if flag == "--filter" and value.startswith("-") and value not in parser._option_string_actions:
            hint = f"a pattern starting with '-' is read as a flag; join it: --filter='{value}'"
            parser.error(f"--filter {value!r}: {hint}")
    args = parser.parse_args(argv)
    check_device_flag(args.device)
    check_precompile_flag(args.precompile)
    if args.filter:
        compile_filter(args.filter)

    ray_options = None
    if args.parallel:
        from zoology.runner.ray import RayOptions

        ray_options = RayOptions.from_args(args)  # checks Ray is installed before any planning

    configs = load_sweep(args.sweep)
    sweep_name = args.name or Path(args.sweep).stem
    sweep_dir = Path(args.runs_dir) / sweep_name
    if args.wandb_project:
        logger = LoggerConfig(
            project=args.wandb_project, entity=args.wandb_entity, group=args.wandb_group, mode=args.wandb_mode
        )
        configs = [c.model_copy(update={"logger": logger}) for c in configs]
    chosen = matching(configs, args.filter)
    if not chosen:
        raise UserError(no_match_message(configs, args.filter))
    check_runs_dir(sweep_dir, create=not args.dry_run)
    planned = plan(configs, sweep_dir, force=args.force, pattern=args.filter)
    report_damaged(planned)
    todo = [p for p in planned if not p.done]
    if ray_options is None:  # under -p the workers' devices are Ray's to assign
        devices = [(args.device or p.config.device, f"{args.sweep}: run {p.config.name}") for p in todo]
        check_devices(devices, args.device, "launch with --device cpu, or set device='auto' in the sweep")
    print(f"sweep {sweep_dir}: {len(planned)} runs, {len(planned) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run:
        print_plan(planned, plan(configs, sweep_dir))
        return 0
    if any(p.config.logger is not None for p in todo):
        from zoology.runner.wandb_log import require_wandb

        require_wandb()

    write_sweep_order(sweep_dir, [c.run_id for c in configs])
    remove_stale_temps(planned)
    started = time.perf_counter()
    rerun_before = time.time() if args.force else None
    progress = Progress(len(todo), sweep_name, sweep_dir)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    precompiler = None
    try:
        precompiler = start_precompile(args, ray_options, todo, progress)
        if ray_options is not None and todo:  # nothing to train: no Ray instance to start
            from zoology.runner.ray import run_parallel

            run_parallel(todo, ray_options, progress, rerun_before)
        else:
            run_sequential(todo, args.device, progress, rerun_before)
    except KeyboardInterrupt:
        exit_within_grace()
        progress.interrupted()
        progress.close()
        print("\ninterrupted: finished runs are kept; launch again to resume", file=sys.stderr)
        return 130
    finally:
        if precompiler is not None:
            precompiler.stop()
        signal.signal(signal.SIGTERM, previous_sigterm)
    progress.close()
    failed = progress.failed
    print(f"\nsweep finished in {time.perf_counter() - started:.1f}s; results in {sweep_dir}")
    print_summary(summary_table(planned, failed, progress.elsewhere))
    elsewhere = [p for p in planned if p.config.run_id in progress.elsewhere and not p.run.is_finished()]
    if elsewhere:
        print(f"\n{len(elsewhere)} run(s) are being trained by another launcher; launch again later to see them")
    try:
        from zoology.analysis import write_frontier

        print(f"frontier plot: {write_frontier(sweep_dir)}")
    except Exception as e:
        print(f"warning: no frontier plot: {type(e).__name__}: {e}", file=sys.stderr)
    if failed:
        print(f"\n{len(failed)} run(s) failed:", file=sys.stderr)
        for run_id, message in failed.items():
            print(f"  {run_id}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
