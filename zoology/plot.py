"""Plot a sweep: `python -m zoology.plot runs/<sweep>` writes runs/<sweep>/frontier.png.

Each figure gets its own default name, from the plot and the settings that differ from the default
(frontier_best_bytes.png, frontier_throughput.png, slices.png, curves.png, ...). The source can also
be a CSV saved from `zoology.results.load` (PNG beside it, <stem>_<name>.png); --plot curves needs
the run directories.

--plot frontier: accuracy against recurrent state (--x state), decode throughput (--x throughput) or
validation perplexity on held-out text (--x perplexity: recall against perplexity, for runs that train
on text and recall together), each model at its best learning rate, each family's Pareto front as a
line. --plot slices: accuracy per model and test slice. --plot curves: loss and accuracy per epoch for
every run. --plot scores: the task score table of a sweep over synthetic tasks (sweeps/mad.py),
families × tasks, each cell the mean over the task's settings of the best accuracy over learning rate
and weight decay (default: token accuracy at the epoch selected on the validation segments;
--accuracy, --metric).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from zoology import analysis, results
from zoology.errors import UserError, add_debug_flag, cli_main


def default_output(args: argparse.Namespace) -> Path:
    """A file name per figure, so that plots with other settings never overwrite each other:
    frontier.png (what the launcher writes), frontier_throughput_best_bytes.png, slices.png, ...;
    beside a CSV source, <stem>_<name>.png."""
    parts = [args.plot]
    if args.plot == "frontier":
        parts += [args.x_column or (args.x if args.x in ("throughput", "perplexity") else "")]
        parts += ["bytes" if args.unit == "bytes" and args.x == "state" and not args.x_column else ""]
        parts += [f"by-{args.facet}" if args.facet else ""]
    if args.plot != "curves":
        parts += [args.metric if args.metric in ("best", "selected") and args.plot != "scores" else ""]
        parts += ["-".join(args.slices or [])]
    name = re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(p for p in parts if p)).strip("-")
    source = Path(args.sweep_dir)
    if source.suffix == ".csv":
        return source.with_name(f"{source.stem}_{name}.png")
    return source / f"{name}.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.plot", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a sweep's results directory (e.g. runs/mqar), or a CSV table saved from one"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="PNG path (default: SWEEP_DIR/<plot>[_<settings>].png, one name per figure)"
    )
    parser.add_argument("--plot", choices=("frontier", "slices", "curves", "scores"), default="frontier")
    parser.add_argument("--x", choices=("state", "throughput", "perplexity"), default="state", help="frontier x-axis")
    parser.add_argument(
        "--x-column", help="results column for the x-axis (default: state_size, or decode_tokens_per_s)"
    )
    parser.add_argument(
        "--unit", choices=("elements", "bytes"), default="elements", help="state axis unit (bytes: fp32, x4)"
    )
    parser.add_argument(
        "--metric",
        choices=("last", "best", "selected"),
        help="last-epoch or best-epoch accuracy (default: last); for scores also the epoch selected on the "
        "validation segments (their default)",
    )
    parser.add_argument(
        "--accuracy",
        choices=("token", "macro", "example"),
        default="token",
        help="scores: over all labelled positions (default), class-balanced, or the mean over examples",
    )
    parser.add_argument(
        "--slices",
        nargs="+",
        metavar="PATTERN",
        help="test slices to average, by name or shell pattern (e.g. 'mqar-L64-*'; default: all)",
    )
    parser.add_argument("--facet", metavar="COLUMN", help="one frontier panel per value of this results column")
    parser.add_argument("--no-labels", action="store_true", help="do not annotate frontier points")
    parser.add_argument("--title", help="figure title (default: the sweep directory's name)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    title = args.title if args.title is not None else args.sweep_dir.stem
    output = args.output or default_output(args)
    metric = args.metric or ("selected" if args.plot == "scores" else "last")
    try:
        if metric == "selected" and args.plot != "scores":
            raise ValueError("--metric selected applies to --plot scores; use last or best")
        if args.plot == "scores":
            scores = analysis.task_scores(results.load(args.sweep_dir), args.accuracy, metric)
            print(scores.to_string(float_format=lambda v: f"{v:.3f}"))
            label = f"{args.accuracy} accuracy ({metric} epoch)"
            fig = analysis.plot_task_scores(scores, title=title, label=label)
        elif args.plot == "curves":
            fig = analysis.plot_curves(analysis.load_curves(args.sweep_dir), title=title)
        else:
            df = results.load(args.sweep_dir)
            if args.plot == "slices":
                fig = analysis.plot_slices(df, metric, args.slices, title=title)
            else:
                column = args.x_column or (f"perplexity_{metric}" if args.x == "perplexity" else None)
                axis = analysis.resolve_axis(args.x, args.unit, column)
                fig = analysis.plot_frontier(
                    df, axis, metric, args.slices, facet=args.facet, labels=not args.no_labels, title=title
                )
    except (FileNotFoundError, ValueError) as e:
        message = str(e) if args.sweep_dir.suffix == ".csv" else str(e).replace("<sweep dir>", str(args.sweep_dir))
        raise UserError(message) from e
    output.parent.mkdir(parents=True, exist_ok=True)
    analysis.save(fig, output)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
