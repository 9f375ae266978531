"""The driver's view of a sweep: one bar over runs (done / failed / running, ETA), a line per
finished run, W&B logging of the runs whose config has a logger, and the summary table at the end."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from zoology.runner.claims import Claim
from zoology.runner.plan import Planned


class Progress:
    """Reports of every run of a sweep as they happen: started, each epoch, finished, failed, skipped."""

    def __init__(self, total: int, sweep: str, sweep_dir: Path):
        self.sweep, self.sweep_dir = sweep, sweep_dir
        self.bar = tqdm(total=total, desc="runs", unit="run", dynamic_ncols=True)
        self.running: dict[str, str] = {}
        self.n_done = self.n_failed = 0
        self.failed: dict[str, str] = {}
        self.elsewhere: set[str] = set()
        self.last = ""
        self.wandb: dict = {}
        self.wandb_offline: list[Path] = []  # the sync directories of runs W&B logged offline
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
            from zoology.runner.wandb_log import WandbRun

            try:
                self.wandb[p.config.run_id] = logged = WandbRun(p.config, self.sweep, self.sweep_dir)
                if logged.offline_dir is not None:
                    self.wandb_offline.append(logged.offline_dir)
            except Exception as e:
                tqdm.write(f"warning: W&B init failed for {p.config.name}: {type(e).__name__}: {e}")
        self._refresh()

    def epoch(self, p: Planned, record: dict) -> None:
        epochs = f"{record['epoch'] + 1}/{p.config.max_epochs}"
        self.last = f"{p.config.name} epoch {epochs} acc {record['valid_acc']:.3f}"
        if "perplexity" in record:
            self.last += f" ppl {record['perplexity']:.3f}"
        self._wandb_call(p.config.run_id, "log_epoch", record)
        self._refresh()

    def finished(self, p: Planned, result: dict) -> None:
        self.running.pop(p.config.run_id, None)
        self.n_done += 1
        ppl = f" ppl {result['last']['perplexity']:.3f}" if "perplexity" in result["last"] else ""
        tqdm.write(
            f"done    {p.config.name:<40} acc {result['last']['acc']:.4f}{ppl} "
            f"(best {result['best']['acc']:.4f}, {epochs_note(p.config, result)}, {result['wall_time']:.1f}s)"
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
        if self.wandb_offline:
            where = sorted({str(d.parent) for d in self.wandb_offline})
            print(
                f"W&B offline: {len(self.wandb_offline)} run(s) saved under {', '.join(where)}; "
                f"upload with `wandb sync {where[0]}/offline-run-*`"
            )


def epochs_note(config, result: dict) -> str:
    """'10 epochs', or '3 of 10 epochs, stopped early: valid acc > 0.99' (early_stopping_threshold)."""
    if not result.get("stopped_early"):
        return f"{result['epochs']} epoch{'s' if result['epochs'] != 1 else ''}"
    return (
        f"{result['epochs']} of {config.max_epochs} epochs, stopped early: "
        f"valid acc > {config.early_stopping_threshold:g}"
    )


def summary_table(planned: list[Planned], failed: dict[str, str], elsewhere: Collection[str] = ()) -> pd.DataFrame:
    """One row per planned run: name, family, width, lr and, once finished, size, accuracy (and
    perplexity, for runs tested on text) and time."""
    rows = []
    for p in planned:
        c = p.config
        row = {"name": c.name, "model": c.model.family, "d_model": c.model.d_model, "lr": c.lr}
        if p.run.is_finished():
            r = p.run.result()
            row |= {
                "params": r["params"],
                "state": r["state_size"],
                "acc_last": r["last"]["acc"],
                "acc_best": r["best"]["acc"],
                **({"perplexity": r["last"]["perplexity"]} if "perplexity" in r["last"] else {}),
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
        "perplexity": "{:.3f}".format,
        "time_s": "{:.1f}".format,
        "lr": "{:g}".format,
        "params": "{:,.0f}".format,
        "state": "{:,.0f}".format,
        "epochs": "{:.0f}".format,
    }
    print(table.to_string(index=False, formatters={k: v for k, v in fmt.items() if k in table}, na_rep="-"))
