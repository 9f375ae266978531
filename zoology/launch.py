"""Run a sweep: `python -m zoology.launch sweeps/mqar.py`.

A sweep file is plain Python defining `configs = [TrainConfig(...), ...]`. Each run writes to
<runs-dir>/<sweep>/<run_id>/; runs with a result.json are skipped unless --force. A run that
raises leaves error.txt with its traceback; the others go on and the exit code is 1.
"""

from __future__ import annotations

import argparse
import re
import runpy
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from zoology.config import TrainConfig
from zoology.results import RunDir


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


def plan(configs: list[TrainConfig], sweep_dir: Path, force: bool = False, pattern: str | None = None) -> list[Planned]:
    regex = re.compile(pattern) if pattern else None
    return [
        Planned(c, RunDir(sweep_dir / c.run_id), RunDir(sweep_dir / c.run_id).is_finished() and not force)
        for c in configs
        if regex is None or regex.search(c.name)
    ]


def summary_table(planned: list[Planned], failed: dict[str, str]) -> pd.DataFrame:
    rows = []
    for p in planned:
        c = p.config
        row = {
            "name": c.name,
            "model": "+".join(m.name.rpartition(".")[2] for m in c.model.mixers),
            "d_model": c.model.d_model,
            "lr": c.lr,
        }
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
        else:
            row["status"] = "FAILED" if c.run_id in failed else "not run"
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


def run_sequential(todo: list[Planned], device: str | None) -> dict[str, str]:
    """Train each pending run in this process; returns {run_id: error message} for failures."""
    from zoology.train import train

    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc="runs", unit="run", dynamic_ncols=True)
    for p in todo:
        config = p.config if device is None else p.config.set({"device": device, "name": p.config.name})
        bar.set_postfix_str(config.name)

        def on_epoch(r: dict, name: str = config.name) -> None:
            bar.set_postfix_str(f"{name} epoch {r['epoch'] + 1}/{r['max_epochs']} acc {r['valid_acc']:.3f}")

        try:
            result = train(config, p.run.path, on_epoch=on_epoch)
            tqdm.write(
                f"done    {config.name:<40} acc {result['last']['acc']:.4f} "
                f"(best {result['best']['acc']:.4f}, {result['epochs']} epochs, {result['wall_time']:.1f}s)"
            )
        except Exception as e:
            p.run.write_error(traceback.format_exc())
            failed[config.run_id] = f"{type(e).__name__}: {e}"
            tqdm.write(f"FAILED  {config.name:<40} {type(e).__name__}: {e}  (see {p.run.error_path})")
        bar.update(1)
    bar.close()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.launch", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="a Python file defining `configs`")
    parser.add_argument("--runs-dir", default="runs", help="results go to RUNS_DIR/<sweep name>/ (default: runs)")
    parser.add_argument("--name", help="sweep name (default: the sweep file's stem)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--filter", metavar="REGEX", help="only runs whose name matches")
    parser.add_argument("--device", help="override every config's device (e.g. cpu, cuda:1)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)

    configs = load_sweep(args.sweep)
    sweep_dir = Path(args.runs_dir) / (args.name or Path(args.sweep).stem)
    planned = plan(configs, sweep_dir, force=args.force, pattern=args.filter)
    todo = [p for p in planned if not p.done]
    print(f"sweep {sweep_dir}: {len(planned)} runs, {len(planned) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run:
        for p in planned:
            print(f"  {'done' if p.done else 'todo'}  {p.config.run_id}  {p.config.name}")
        return 0

    started = time.perf_counter()
    try:
        failed = run_sequential(todo, args.device)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; launch again to resume", file=sys.stderr)
        return 130
    print(f"\nsweep finished in {time.perf_counter() - started:.1f}s; results in {sweep_dir}")
    print_summary(summary_table(planned, failed))
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
