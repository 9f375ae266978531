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

Each run is locked while it trains (<run>/.lock, see zoology.runlock), so two launchers on the
same sweep never train the same config twice; a launcher that is killed holds nothing afterwards.
Launching again after an interruption resumes: finished runs are kept, unfinished ones restart.
"""

from __future__ import annotations

import argparse
import re
import runpy
import signal
import sys
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from zoology.config import LoggerConfig, TrainConfig
from zoology.results import RunDir
from zoology.runlock import RunLock


@dataclass
class Planned:
    config: TrainConfig
    run: RunDir
    done: bool


def load_sweep(path: str | Path) -> list[TrainConfig]:
    """The `configs` list of a sweep file, deduplicated by run id (first one wins)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep file {str(path)!r}")
    namespace = runpy.run_path(str(path), run_name="__sweep__")
    configs = namespace.get("configs")
    if configs is None:
        raise ValueError(f"{path}: a sweep file must define `configs = [TrainConfig(...), ...]`")
    configs = list(configs)
    bad = [i for i, c in enumerate(configs) if not isinstance(c, TrainConfig)]
    if bad:
        raise TypeError(f"{path}: configs[{bad[0]}] is a {type(configs[bad[0]]).__name__}, not a TrainConfig")
    unique = {}
    for c in configs:
        unique.setdefault(c.run_id, c)
    return list(unique.values())


def matching(configs: list[TrainConfig], pattern: str | None) -> list[TrainConfig]:
    """The configs whose name matches `pattern` (re.search); all of them without one."""
    regex = re.compile(pattern) if pattern else None
    return [c for c in configs if regex is None or regex.search(c.name)]


def plan(configs: list[TrainConfig], sweep_dir: Path, force: bool = False, pattern: str | None = None) -> list[Planned]:
    return [
        Planned(c, RunDir(sweep_dir / c.run_id), RunDir(sweep_dir / c.run_id).is_finished() and not force)
        for c in matching(configs, pattern)
    ]


def family(config: TrainConfig) -> str:
    return "+".join(m.name.rpartition(".")[2] for m in config.model.mixers)


def summary_table(planned: list[Planned], failed: dict[str, str], elsewhere: Collection[str] = ()) -> pd.DataFrame:
    rows = []
    for p in planned:
        c = p.config
        row = {"name": c.name, "model": family(c), "d_model": c.model.d_model, "lr": c.lr}
        if p.run.is_finished():
            r = p.run.result()
            row |= {
                "params": r["params"],
                "state": r["state_size"],
                "acc_last": r["last"]["acc"],
                "acc_best": r["best"]["acc"],
                "epochs": r["epochs"],
                "time_s": r["wall_time"],
                "status": "done",
            }
        elif c.run_id in failed:
            row["status"] = "FAILED"
        else:
            row["status"] = "elsewhere" if c.run_id in elsewhere else "not run"
        rows.append(row)
    return pd.DataFrame(rows)


def print_summary(table: pd.DataFrame) -> None:
    if table.empty:
        print("no runs")
        return
    fmt = {
        "acc_last": "{:.3f}".format,
        "acc_best": "{:.3f}".format,
        "time_s": "{:.1f}".format,
        "lr": "{:g}".format,
        "params": "{:,.0f}".format,
        "state": "{:,.0f}".format,
        "epochs": "{:.0f}".format,
    }
    print(table.to_string(index=False, formatters={k: v for k, v in fmt.items() if k in table}, na_rep="-"))


def estimate_seconds(todo: list[Planned], reference: list[Planned]) -> dict[str, float]:
    """Expected wall time of each run in `todo`: the mean over finished `reference` runs of the same
    model family and width, else of the same family, else of all of them (none: no estimate)."""
    finished = [(p.config, p.run.result()["wall_time"]) for p in reference if p.run.is_finished()]

    def mean(times: list[float]) -> float | None:
        return sum(times) / len(times) if times else None

    estimates = {}
    for p in todo:
        c = p.config
        same_size = [t for f, t in finished if family(f) == family(c) and f.model.d_model == c.model.d_model]
        same_family = [t for f, t in finished if family(f) == family(c)]
        guess = mean(same_size) or mean(same_family) or mean([t for _, t in finished])
        if guess is not None:
            estimates[c.run_id] = guess
    return estimates


def print_plan(planned: list[Planned], reference: list[Planned]) -> None:
    """One line per run (done / todo / running elsewhere) and the estimated time of what is left,
    from the finished runs among `reference` (the whole sweep, unfiltered)."""
    todo = [p for p in planned if not p.done]
    estimates = estimate_seconds(todo, reference)
    for p in planned:
        c, lock = p.config, RunLock(p.run.path)
        if p.run.is_finished():
            r = p.run.result()
            note = f"acc {r['last']['acc']:.3f}  {r['wall_time']:.1f}s" + ("  (rerun: --force)" if not p.done else "")
            status = "done" if p.done else "todo"
        elif lock.seems_held():
            status, note = "running", f"held by {lock.describe_holder()}"
        else:
            status = "todo"
            note = f"~{estimates[c.run_id]:.0f}s" if c.run_id in estimates else ""
            note += "  (failed before)" if p.run.error_path.exists() else ""
        print(f"  {status:<8} {c.run_id}  {c.name:<40} {note}")
    if todo:
        known = [estimates[p.config.run_id] for p in todo if p.config.run_id in estimates]
        n_finished = sum(p.run.is_finished() for p in reference)
        if known:
            text = f"estimated time: {sum(known) / 60:.1f} min of training for {len(known)} run(s)"
            text += f" one after another (-p divides it by the runs at a time), from {n_finished} finished run(s)"
            if len(known) < len(todo):
                text += f"; {len(todo) - len(known)} run(s) without an estimate"
            print(text)
        else:
            print("estimated time: unknown (no finished run in this sweep yet)")


class Claim(Enum):
    TAKEN = "taken"
    FINISHED = "finished"
    ELSEWHERE = "elsewhere"


def claim(p: Planned, lock: RunLock, rerun_before: float | None) -> Claim:
    """Lock a run for training. A run that another launcher finished meanwhile is not retrained;
    under --force (`rerun_before` = this launch's start) only results older than the launch are."""
    if not lock.acquire():
        return Claim.ELSEWHERE
    if p.run.is_finished() and (rerun_before is None or p.run.result_path.stat().st_mtime >= rerun_before):
        lock.release()
        return Claim.FINISHED
    return Claim.TAKEN


class Progress:
    """The driver's view of a sweep: one bar over runs (done / failed / running, ETA), a line per
    finished run, and W&B logging of the runs whose config has a logger."""

    def __init__(self, total: int, sweep: str, sweep_dir: Path):
        self.sweep, self.sweep_dir = sweep, sweep_dir
        self.bar = tqdm(total=total, desc="runs", unit="run", dynamic_ncols=True)
        self.running: dict[str, str] = {}
        self.n_done = self.n_failed = 0
        self.failed: dict[str, str] = {}
        self.elsewhere: set[str] = set()
        self.last = ""
        self.wandb: dict = {}
        self._refresh()

    def _refresh(self) -> None:
        counts = f"done {self.n_done} failed {self.n_failed} running {len(self.running)}"
        self.bar.set_postfix_str(f"{counts} | {self.last}" if self.last else counts)

    def _wandb_call(self, run_id: str, method: str, *args) -> None:
        run = self.wandb.get(run_id)
        if run is None:
            return
        try:
            getattr(run, method)(*args)
        except Exception as e:
            tqdm.write(f"warning: W&B {method} failed for {run_id}: {type(e).__name__}: {e}; W&B logging of it stops")
            self.wandb.pop(run_id, None)

    def started(self, p: Planned, where: str = "") -> None:
        self.running[p.config.run_id] = where
        if p.config.logger is not None:
            from zoology.wandb_logger import WandbRun

            try:
                self.wandb[p.config.run_id] = WandbRun(p.config, self.sweep, self.sweep_dir)
            except Exception as e:
                tqdm.write(f"warning: W&B init failed for {p.config.name}: {type(e).__name__}: {e}")
        self._refresh()

    def epoch(self, p: Planned, record: dict) -> None:
        self.last = f"{p.config.name} epoch {record['epoch'] + 1}/{record['max_epochs']} acc {record['valid_acc']:.3f}"
        self._wandb_call(p.config.run_id, "log_epoch", record)
        self._refresh()

    def finished(self, p: Planned, result: dict) -> None:
        self.running.pop(p.config.run_id, None)
        self.n_done += 1
        tqdm.write(
            f"done    {p.config.name:<40} acc {result['last']['acc']:.4f} "
            f"(best {result['best']['acc']:.4f}, {result['epochs']} epochs, {result['wall_time']:.1f}s)"
        )
        self._wandb_call(p.config.run_id, "finish", result)
        self.wandb.pop(p.config.run_id, None)
        self.bar.update(1)
        self._refresh()

    def fail(self, p: Planned, reason: str) -> None:
        self.running.pop(p.config.run_id, None)
        self.n_failed += 1
        self.failed[p.config.run_id] = reason
        tqdm.write(f"FAILED  {p.config.name:<40} {reason}  (see {p.run.error_path})")
        self._wandb_call(p.config.run_id, "fail", reason)
        self.wandb.pop(p.config.run_id, None)
        self.bar.update(1)
        self._refresh()

    def skipped(self, p: Planned, claim: Claim, holder: str = "") -> None:
        if claim is Claim.ELSEWHERE:
            self.elsewhere.add(p.config.run_id)
            tqdm.write(f"skip    {p.config.name:<40} being trained by {holder}")
        else:
            tqdm.write(f"skip    {p.config.name:<40} finished by another launcher")
        self.bar.update(1)
        self._refresh()

    def interrupted(self) -> None:
        for run_id in list(self.wandb):
            self._wandb_call(run_id, "fail", "interrupted")
        self.wandb.clear()

    def close(self) -> None:
        self.bar.close()


def with_device(config: TrainConfig, device: str | None) -> TrainConfig:
    return config if device is None else config.set({"device": device, "name": config.name})


def claim_in_turn(
    todo: list[Planned], rerun_before: float | None, progress: Progress
) -> Callable[[], tuple[Planned, RunLock] | None]:
    """A function giving the next run this launcher may train, locked; None when there is none.
    Runs held by another launcher are tried once more at the end (that launcher may have died)."""
    queue = list(todo)
    retried: set[str] = set()

    def next_run() -> tuple[Planned, RunLock] | None:
        while queue:
            p = queue.pop(0)
            lock = RunLock(p.run.path)
            outcome = claim(p, lock, rerun_before)
            if outcome is Claim.TAKEN:
                return p, lock
            if outcome is Claim.ELSEWHERE and p.config.run_id not in retried:
                retried.add(p.config.run_id)
                queue.append(p)
                continue
            progress.skipped(p, outcome, lock.describe_holder())
        return None

    return next_run


def run_sequential(todo: list[Planned], device: str | None, progress: Progress, rerun_before: float | None) -> None:
    """Train each pending run in this process, holding its lock while it trains."""
    from zoology.train import train

    next_run = claim_in_turn(todo, rerun_before, progress)
    while (taken := next_run()) is not None:
        p, lock = taken
        try:
            config = with_device(p.config, device)
            progress.started(p)
            try:
                result = train(config, p.run.path, on_epoch=lambda r, p=p: progress.epoch(p, r))
            except Exception as e:
                p.run.write_error(traceback.format_exc())
                progress.fail(p, f"{type(e).__name__}: {e}")
            else:
                progress.finished(p, result)
        finally:
            lock.release()


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoology.launch",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("sweep", help="a Python file defining `configs`")
    parser.add_argument("--runs-dir", default="runs", help="results go to RUNS_DIR/<sweep name>/ (default: runs)")
    parser.add_argument("--name", help="sweep name (default: the sweep file's stem)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--filter", metavar="REGEX", help="only runs whose name matches (re.search)")
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
    wandb_args = parser.add_argument_group("Weights & Biases (pip install 'zoology[wandb]'); overrides configs' logger")
    wandb_args.add_argument("--wandb-project", metavar="NAME", help="log every run to this W&B project")
    wandb_args.add_argument("--wandb-entity", metavar="NAME")
    wandb_args.add_argument("--wandb-group", metavar="NAME", help="default: the sweep name")
    wandb_args.add_argument("--wandb-mode", choices=("online", "offline", "disabled"))
    args = parser.parse_args(argv)

    ray_options = None
    if args.parallel:
        from zoology.parallel import RayOptions

        ray_options = RayOptions.from_args(args)  # checks Ray is installed before any planning

    configs = load_sweep(args.sweep)
    sweep_name = args.name or Path(args.sweep).stem
    sweep_dir = Path(args.runs_dir) / sweep_name
    if args.wandb_project:
        logger = LoggerConfig(
            project=args.wandb_project, entity=args.wandb_entity, group=args.wandb_group, mode=args.wandb_mode
        )
        configs = [c.model_copy(update={"logger": logger}) for c in configs]
    planned = plan(configs, sweep_dir, force=args.force, pattern=args.filter)
    todo = [p for p in planned if not p.done]
    print(f"sweep {sweep_dir}: {len(planned)} runs, {len(planned) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run:
        print_plan(planned, plan(configs, sweep_dir))
        return 0
    if any(p.config.logger is not None for p in todo):
        from zoology.wandb_logger import require_wandb

        require_wandb()

    started = time.perf_counter()
    rerun_before = time.time() if args.force else None
    progress = Progress(len(todo), sweep_name, sweep_dir)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if ray_options is not None:
            from zoology.parallel import run_parallel

            run_parallel(todo, ray_options, progress, rerun_before)
        else:
            run_sequential(todo, args.device, progress, rerun_before)
    except KeyboardInterrupt:
        progress.interrupted()
        progress.close()
        print("\ninterrupted: finished runs are kept; launch again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    progress.close()
    failed = progress.failed
    print(f"\nsweep finished in {time.perf_counter() - started:.1f}s; results in {sweep_dir}")
    print_summary(summary_table(planned, failed, progress.elsewhere))
    elsewhere = [p for p in planned if p.config.run_id in progress.elsewhere and not p.run.is_finished()]
    if elsewhere:
        print(f"\n{len(elsewhere)} run(s) are being trained by another launcher; launch again later to see them")
    try:
        from zoology.plot import write_frontier

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
    sys.exit(main())
