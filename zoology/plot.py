"""Plot a sweep: `python -m zoology.plot runs/<sweep>` writes runs/<sweep>/frontier.png.

The source can also be a CSV saved from `zoology.results.load` (PNG beside it, <stem>_<plot>.png);
--plot curves needs the run directories.

--plot frontier: accuracy against recurrent state (--x state) or decode throughput (--x throughput),
each model at its best learning rate, each family's Pareto front as a line. --plot slices: accuracy
per model and test slice. --plot curves: loss and accuracy per epoch for every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoology import analysis, results

DPI = 150


def default_output(sweep_dir: Path, plot: str, x: str) -> Path:
    name = "frontier_throughput" if plot == "frontier" and x == "throughput" else plot
    sweep_dir = Path(sweep_dir)
    if sweep_dir.suffix == ".csv":
        return sweep_dir.with_name(f"{sweep_dir.stem}_{name}.png")
    return sweep_dir / f"{name}.png"


def write_frontier(sweep_dir: str | Path, path: str | Path | None = None) -> Path:
    """Save the state frontier of a sweep (last-epoch accuracy, all test slices) as a PNG."""
    sweep_dir = Path(sweep_dir)
    path = Path(path) if path else default_output(sweep_dir, "frontier", "state")
    fig = analysis.plot_frontier(results.load(sweep_dir), title=sweep_dir.name)
    fig.savefig(path, dpi=DPI)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.plot", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a sweep's results directory (e.g. runs/mqar), or a CSV table saved from one"
    )
    parser.add_argument("-o", "--output", type=Path, help="PNG path (default: SWEEP_DIR/<plot>.png)")
    parser.add_argument("--plot", choices=("frontier", "slices", "curves"), default="frontier")
    parser.add_argument("--x", choices=("state", "throughput"), default="state", help="frontier x-axis")
    parser.add_argument(
        "--x-column", help="results column for the x-axis (default: state_size, or decode_tokens_per_s)"
    )
    parser.add_argument(
        "--unit", choices=("elements", "bytes"), default="elements", help="state axis unit (bytes: fp32, x4)"
    )
    parser.add_argument("--metric", choices=("last", "best"), default="last", help="last-epoch or best-epoch accuracy")
    parser.add_argument(
        "--slices",
        nargs="+",
        metavar="PATTERN",
        help="test slices to average, by name or shell pattern (e.g. 'mqar-L64-*'; default: all)",
    )
    parser.add_argument("--facet", metavar="COLUMN", help="one frontier panel per value of this results column")
    parser.add_argument("--no-labels", action="store_true", help="do not annotate frontier points")
    parser.add_argument("--title", help="figure title (default: the sweep directory's name)")
    args = parser.parse_args(argv)

    title = args.title if args.title is not None else args.sweep_dir.stem
    output = args.output or default_output(args.sweep_dir, args.plot, args.x)
    try:
        if args.plot == "curves":
            fig = analysis.plot_curves(analysis.load_curves(args.sweep_dir), title=title)
        else:
            df = results.load(args.sweep_dir)
            if args.plot == "slices":
                fig = analysis.plot_slices(df, args.metric, args.slices, title=title)
            else:
                axis = analysis.resolve_axis(args.x, args.unit, args.x_column)
                fig = analysis.plot_frontier(
                    df, axis, args.metric, args.slices, facet=args.facet, labels=not args.no_labels, title=title
                )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=DPI)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
