"""Weights & Biases logging of sweep runs, driven by the launcher (never by the training loop).

The launcher process logs every run, whether it trains in the same process or as a Ray task on
another machine: config when the run starts, one history row per epoch as it lands, a summary at
the end (parameters, state size, final and best accuracy), or the failure reason with exit code 1.
So W&B needs to be installed and reach its server only where the launcher runs. Runs are grouped
by sweep name; every attempt at a run is its own W&B run (its config carries the zoology run_id).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoology.config import TrainConfig
from zoology.errors import UserError


def require_wandb() -> None:
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise UserError("W&B logging needs wandb: pip install 'zoology[wandb]' (or pip install wandb)") from e


def history_row(record: dict) -> dict[str, Any]:
    """One epoch's metrics record as a flat W&B history row (slices as valid_acc/<slice>, text slices'
    perplexity as perplexity/<slice>)."""
    row = {k: v for k, v in record.items() if k not in ("slices", "perplexity_slices", "max_epochs")}
    row |= {f"valid_acc/{name}": acc for name, acc in record["slices"].items()}
    row |= {f"perplexity/{name}": value for name, value in record.get("perplexity_slices", {}).items()}
    return row


def summary(result: dict) -> dict[str, Any]:
    keys = ("params", "state_size", "state_seq_len", "epochs", "stopped_early", "wall_time", "train_tokens_per_s")
    out = {k: result[k] for k in keys} | {"device_name": result["device"]}
    out |= {"acc_last": result["last"]["acc"], "acc_best": result["best"]["acc"], "best_epoch": result["best"]["epoch"]}
    out |= {f"acc_last/{name}": acc for name, acc in result["last"]["slices"].items()}
    if "perplexity" in result["last"]:
        out |= {"perplexity_last": result["last"]["perplexity"], "perplexity_best": result["best"]["perplexity"]}
    return out


class WandbRun:
    """One attempt at one run, logged to W&B; several can be open at once in one process."""

    def __init__(self, config: TrainConfig, sweep: str, sweep_dir: str | Path):
        import wandb

        settings = config.logger
        assert settings is not None
        directory = settings.dir or os.environ.get("WANDB_DIR") or str(sweep_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        run_config = config.model_dump(mode="json", exclude={"logger"})
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            group=settings.group or sweep,
            job_type=config.model.family,
            name=config.name,
            tags=settings.tags or None,
            mode=settings.mode,
            dir=directory,
            config={**run_config, "run_id": config.run_id, "sweep": sweep, "family": config.model.family},
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        # where an offline run's files are (`wandb sync` uploads them); None when online or disabled
        self.offline_dir = Path(self.run.settings.sync_dir) if self.run.settings.mode == "offline" else None

    def log_epoch(self, record: dict) -> None:
        self.run.log(history_row(record), step=record["epoch"])

    def finish(self, result: dict) -> None:
        self.run.summary.update({**summary(result), "status": "done"})
        self.run.finish(exit_code=0)

    def fail(self, reason: str) -> None:
        self.run.summary.update({"status": "failed", "error": reason})
        self.run.finish(exit_code=1)
