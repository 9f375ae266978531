"""Training runs one after another in this process, each recorded in its run directory."""

from __future__ import annotations

import traceback
from collections.abc import Callable

from zoology.config import TrainConfig
from zoology.runner.claims import claim_in_turn
from zoology.runner.plan import Planned
from zoology.runner.progress import Progress
from zoology.runner.rundir import RunDir
from zoology.training import Callbacks, Diverged, train


def with_device(config: TrainConfig, device: str | None) -> TrainConfig:
    """The config on `device` (None: as it is); the name is kept."""
    return config if device is None else config.set({"device": device, "name": config.name})


def train_run(config: TrainConfig, run: RunDir, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train `config` into `run`: from the checkpoint an unfinished attempt left there, if any; each
    epoch's record appended to metrics.jsonl (then passed to `on_epoch`), checkpoints and weights
    kept, and the result written last. Returns the result; a run that diverged has its reason in
    error.txt (no result) and raises Diverged."""
    resume = run.checkpoint()
    run.start(config.model_dump(mode="json"))

    def epoch(record: dict) -> None:
        run.append_metrics(record)
        if on_epoch is not None:
            on_epoch(record)

    callbacks = Callbacks(on_epoch=epoch, on_checkpoint=run.write_checkpoint, on_weights=run.write_weights)
    try:
        result = train(config, callbacks, resume=resume)
    except Diverged as e:
        run.write_error(f"{e}\n")
        raise
    run.write_result(result)
    return result


def run_sequential(todo: list[Planned], device: str | None, progress: Progress, rerun_before: float | None) -> None:
    """Train each pending run in this process, holding its lock while it trains; a run that raises
    leaves its traceback in error.txt (one that diverged, the reason) and the others go on."""
    next_run = claim_in_turn(todo, rerun_before, progress.skipped)
    while (taken := next_run()) is not None:
        p, lock = taken
        try:
            progress.started(p)
            try:
                result = train_run(with_device(p.config, device), p.run, on_epoch=lambda r, p=p: progress.epoch(p, r))
            except Diverged as e:  # its reason is in error.txt already
                progress.fail(p, str(e))
            except Exception as e:
                p.run.write_error(traceback.format_exc())
                progress.fail(p, f"{type(e).__name__}: {e}")
            else:
                progress.finished(p, result)
        finally:
            lock.release()
