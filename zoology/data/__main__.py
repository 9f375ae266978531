"""python -m zoology.data show SOURCE [-n 3] [--seed S]: print examples as the model sees them.

SOURCE is a segment config (a YAML/JSON file or inline, e.g. '{task: ar, input_seq_len: 16,
num_kv_pairs: 4, num_examples: 10, vocab_size: 64}'), a list of them, a data preset (see
zoology.data.presets.PRESETS), or a TrainConfig (a YAML file or a preset in configs/).

For a TrainConfig the examples are exactly those of the run: each segment's seed is derived from
data.seed (or --seed) as in training, and data.cache_dir is used. Otherwise --seed (default 0) is
the segment's own seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from zoology.config import (
    PRESETS_DIR,
    DataConfig,
    TrainConfig,
    describe_validation_error,
    parse_yaml,
    read_yaml,
    resolve_preset,
    segment_adapter,
)
from zoology.data import load_segment, segment_seed
from zoology.data.presets import PRESETS
from zoology.data.show import legend, render_segment
from zoology.errors import UserError, add_debug_flag, cli_main


def _parse(source: str) -> Any:
    """The YAML/JSON data behind `source`, or a list of configs for a data preset."""
    path = Path(source)
    if path.is_file():
        return read_yaml(path)
    if source.lstrip().startswith(("{", "[")):
        return parse_yaml(source, _label(source))
    if source in PRESETS:
        return PRESETS[source]()
    try:
        preset = resolve_preset(source)
    except UserError:
        configs = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise UserError(
            f"no file, data preset or config preset named {source!r}\n"
            f"  data presets: {', '.join(PRESETS)}\n  config presets: {', '.join(configs)}"
        ) from None
    return read_yaml(preset)


def _label(source: str) -> str:
    """How messages name a source: a file or preset as given, inline YAML shortened."""
    return source if len(source) <= 60 else f"{source[:57]}..."


def segments_of(source: str, seed: int | None, split: str) -> list[tuple[str, Any, int, str | None]]:
    """(title, segment config, seed, cache dir) for every segment `source` names; a mistake in it
    raises a UserError naming the source and the field."""
    data, label = _parse(source), _label(source)
    try:
        if isinstance(data, dict) and "model" in data:
            data = TrainConfig.model_validate(data).data
        elif isinstance(data, dict) and {"train", "test"} & data.keys():
            data = DataConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, label)) from e
    if isinstance(data, DataConfig):
        data_seed = data.seed if seed is None else seed
        splits = ("train", "test") if split == "all" else (split,)
        return [
            (f"{s}[{i}]", config, segment_seed(data_seed, s, i), data.cache_dir)
            for s in splits
            for i, config in enumerate(getattr(data, s))
        ]
    items = data if isinstance(data, list) else [data]
    configs = [_segment(item, label, f"[{i}]" if isinstance(data, list) else "") for i, item in enumerate(items)]
    return [
        (f"[{i}]" if len(configs) > 1 else None, c, 0 if seed is None else seed, None) for i, c in enumerate(configs)
    ]


def _segment(item: Any, label: str, index: str) -> Any:
    """One segment config from its mapping of fields."""
    if not isinstance(item, (dict, BaseModel)):
        raise UserError(
            f"{label}{': ' + index if index else ''}: a segment config must be a mapping of fields "
            f"(task: ..., input_seq_len: ..., ...), not {type(item).__name__} ({str(item)[:40]!r})"
        )
    try:
        return segment_adapter.validate_python(item)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, label, f"{index}." if index else "")) from e


def show(args: argparse.Namespace) -> int:
    chosen = segments_of(args.source, args.seed, args.split)
    if args.segment is not None:
        if not 0 <= args.segment < len(chosen):
            raise UserError(f"--segment {args.segment}: {args.source} has segments 0 … {len(chosen) - 1}")
        chosen = [chosen[args.segment]]
    for line in dict.fromkeys(legend(config) for _, config, _, _ in chosen):
        print(line)
    for title, config, seed, cache_dir in chosen:
        try:
            segment = load_segment(config, seed, cache_dir)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"{_label(args.source)}{' ' + title if title else ''}: {e}") from e
        print()
        print(render_segment(config, segment, seed, args.num, args.columns, args.max_tokens, title))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("show", help="print examples with keys, values, queries and labels marked")
    p.add_argument("source", help="segment config file or inline YAML, data preset, or TrainConfig")
    p.add_argument("-n", "--num", type=int, default=3, help="examples per segment (default 3)")
    p.add_argument("--seed", type=int, help="segment seed (default 0); for a TrainConfig, the data seed")
    p.add_argument("--split", choices=("train", "test", "all"), default="all", help="for a TrainConfig")
    p.add_argument("--segment", type=int, help="only the segment with this index in the listing")
    p.add_argument("--columns", type=int, help="tokens per printed row (default: fit 120 characters)")
    p.add_argument("--max-tokens", type=int, help="print at most this many tokens of each example")
    add_debug_flag(p)
    args = parser.parse_args(argv)
    return show(args)


if __name__ == "__main__":
    sys.exit(cli_main(main))
