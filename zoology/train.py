"""Train one config: `python -m zoology.train configs/attention.yaml --set model.d_model=64 lr=3e-3`.

The run is recorded in RUNS_DIR/train-<model family>/<run id>/ (the run-directory format of
zoology.runner.rundir; apart from every sweep's directory, so a config changed with --set never
lands beside a sweep's runs) and continues from the checkpoint an earlier, interrupted attempt left
there. A line per epoch as it ends, and at the end the per-epoch report: epoch, train loss,
validation loss and accuracy, and perplexity when the config is tested on text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoology.config import TrainConfig, add_set_flag
from zoology.errors import add_debug_flag, cli_main
from zoology.runner.checks import check_devices, check_runs_dir
from zoology.runner.progress import epochs_note
from zoology.runner.rundir import standalone_run
from zoology.runner.sequential import train_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a YAML TrainConfig, or the name of a preset in configs/")
    add_set_flag(parser)
    parser.add_argument("--runs-dir", default="runs", help="results go to RUNS_DIR/train-<model family>/<run id>")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    config = TrainConfig.from_yaml(args.config, args.overrides)
    check_devices([(config.device, str(args.config))], None, "use --set device=cpu (or auto)")
    check_runs_dir(Path(args.runs_dir))
    run = standalone_run(args.runs_dir, config.model.family, config.run_id)
    print(f"{config.name}  run {config.run_id}  ->  {run.path}")

    records = []

    def report(r: dict) -> None:
        records.append(r)
        ppl = f"  perplexity {r['perplexity']:.3f}" if "perplexity" in r else ""
        print(
            f"epoch {r['epoch'] + 1:>3}/{config.max_epochs}  loss {r['train_loss']:.4f}  "
            f"valid acc {r['valid_acc']:.4f}{ppl}  {r['tokens_per_s']:,.0f} tok/s",
            flush=True,
        )

    result = train_run(config, run, on_epoch=report)
    print(f"\n{epoch_report(records)}\n")
    ppl = f"  perplexity {result['last']['perplexity']:.3f}" if "perplexity" in result["last"] else ""
    print(
        f"last acc {result['last']['acc']:.4f}  best acc {result['best']['acc']:.4f}{ppl}  "
        f"params {result['params']:,}  state {result['state_size']:,}  {result['wall_time']:.1f}s  "
        f"({epochs_note(config, result)})"
    )
    print(f"results in {run.path}")
    return 0


def epoch_report(records: list[dict]) -> str:
    """The run's epochs as a table: epoch, train loss, validation loss and accuracy, perplexity (if tested on text)."""
    text = any("perplexity" in r for r in records)
    lines = ["epoch  train loss  valid loss  valid acc" + ("  perplexity" if text else "")]
    for r in records:
        line = f"{r['epoch'] + 1:>5}  {r['train_loss']:>10.4f}  {r['valid_loss']:>10.4f}  {r['valid_acc']:>9.4f}"
        lines.append(line + (f"  {r['perplexity']:>10.3f}" if text else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli_main(main))
