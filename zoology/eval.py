"""Evaluate trained runs on new test slices: `python -m zoology.eval RUN_DIR… --test SEGMENTS`.

RUN_DIR is a run directory, or a sweep directory (every finished run in it). SEGMENTS (repeatable) is
a segment config or a list of them (a YAML/JSON file or inline: '{input_seq_len: 256, num_kv_pairs:
16, num_examples: 500, vocab_size: 512}'), a data preset, or a TrainConfig (its test segments), as
for `python -m zoology.data show`: longer sequences, more pairs, another filler or another task.

Each run's kept weights (model.safetensors; --weights best: model_best.safetensors) are loaded into
the model its config.json describes; each slice is generated with a seed derived from the run's data
seed and the slice's config (so every run sees the same examples) and evaluated as the run's own
test slices are (accuracy, loss, and perplexity for text). The results go to <run>/evaluations.json;
`zoology.results.load_slices` lists them beside the run's own slices (evaluated: true),
`results.load` adds them as columns, and `python -m zoology.plot SWEEP --plot slices` shows them.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from zoology import results
from zoology.config import TrainConfig
from zoology.data import DeviceSegment, load_segment
from zoology.data.__main__ import segments_of
from zoology.errors import UserError, add_debug_flag, cli_main
from zoology.runner.checks import check_device_flag, missing_device
from zoology.runner.rundir import RunDir, Weights, run_dirs
from zoology.training.evaluation import evaluate, perplexity
from zoology.training.step import autocast
from zoology.utils import derive_seed, pick_device


def eval_seed(data_seed: int, segment: Any) -> int:
    """The seed of an evaluated slice: its config and the run's data seed, nothing else."""
    return derive_seed("eval-segment", data_seed, segment.model_dump(mode="json"))


def evaluate_run(
    run: RunDir, segments: list[Any], weights: Weights = "final", device: str = "auto", batch_size: int | None = None
) -> list[dict[str, Any]]:
    """Evaluate a finished run's kept weights on `segments` (segment configs) and record them in its
    evaluations.json; returns the entries written."""
    if not run.is_finished():
        raise ValueError(f"{run.path}: the run has not finished (no result.json)")
    config = TrainConfig.model_validate(run.config())
    for i, segment in enumerate(segments):
        if segment.vocab_size > config.model.vocab_size:
            raise ValueError(
                f"--test segment {i} ({segment.task}): vocab_size={segment.vocab_size} exceeds the run's "
                f"model.vocab_size={config.model.vocab_size}"
            )
    on = pick_device(device)
    model = results.load_model(run.path, weights, on)
    seeds = [eval_seed(config.data.seed, s) for s in segments]
    built = []
    for i, (segment, seed) in enumerate(zip(segments, seeds)):
        try:
            built.append(DeviceSegment.from_segment(load_segment(segment, seed, config.data.cache_dir), on))
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"--test segment {i} ({segment.task}): {e}") from e
    names = [s.name for s in built]
    if len(set(names)) != len(names):
        raise ValueError(f"--test: two segments have the same slice ({names}); make each distinct")
    precision = config.resolved_precision(on)
    with autocast(on, precision):
        summary = evaluate(model, built, batch_size or config.data.test_batch_size)
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries = []
    for segment, device_segment, seed in zip(segments, built, seeds):
        name = device_segment.name
        entry = {
            "slice": name,
            "fields": device_segment.slice,
            "segment": segment.model_dump(mode="json"),
            "seed": seed,
            "num_examples": len(device_segment),
            "weights": weights,
            "acc": summary["slices"][name],
            "loss": summary["slice_losses"][name],
            "device": on.type,
            "precision": precision,
            "evaluated_at": when,
        }
        if segment.language_modelling:
            entry["perplexity"] = perplexity(summary["slice_losses"][name])
        entries.append(entry)
    run.write_evaluations(entries)
    return entries


def runs_of(paths: list[Path]) -> list[RunDir]:
    """Each path as a run directory, or the finished runs of a sweep directory."""
    runs = []
    for path in paths:
        if RunDir(path).config_path.exists():
            runs.append(RunDir(path))
            continue
        found = [r for r in run_dirs(path) if r.is_finished()]
        if not found:
            raise FileNotFoundError(f"{path}: neither a run directory nor a sweep directory with finished runs")
        runs += found
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.eval", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories or sweep directories")
    parser.add_argument(
        "--test",
        action="append",
        required=True,
        metavar="SEGMENTS",
        help="segment config(s): a YAML/JSON file, inline YAML, a data preset or a TrainConfig (repeatable)",
    )
    parser.add_argument("--weights", choices=("final", "best"), default="final", help="which kept weights")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, help="examples per evaluation batch (default: the run's)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    check_device_flag(None if args.device == "auto" else args.device)
    try:
        segments = [config for source in args.test for _, config, _, _ in segments_of(source, None, "test")]
        runs = runs_of(args.runs)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    reason = missing_device(args.device)
    if reason is not None:
        raise UserError(f"--device {args.device}: {reason}; use --device cpu or auto")
    failed = 0
    for run in runs:
        try:
            entries = evaluate_run(run, segments, args.weights, args.device, args.batch_size)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        name = run.config().get("name") or run.path.name
        for e in entries:
            ppl = f"  perplexity {e['perplexity']:.3f}" if "perplexity" in e else ""
            print(f"{name:<32} {args.weights:<5} {e['slice']:<28} acc {e['acc']:.4f}  loss {e['loss']:.4f}{ppl}")
        print(f"  -> {run.evaluations_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
