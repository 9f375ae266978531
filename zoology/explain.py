"""See what a query used: `python -m zoology.explain RUN_DIR [-n 2] [--layer K] [--head H] [--out DIR]`.

Runs the first n examples of the run's own test slices (its config.json; --slice picks one, else the first) through
its trained model (model.safetensors), reads the chosen layer's token-to-token weights W (y = W·v of the mixer's
parallel form, `token_weights`), and writes one PNG per example into RUN_DIR/explain/ (or --out DIR): the query
rows against the positions they see, each row's share of its |W|, keys, values and queries marked as in
`python -m zoology.data show`. --layer defaults to the last layer with token weights, --head to the mean over
heads. Then it prints, per layer and key–value recall test slice, the retrieval mass: the share of each query's
|W| on its key's value and on its key, mean over heads and over the queries of --mass-examples examples
(`zoology.analysis.retrieval_mass`, whose docstring gives the definition).
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from zoology.analysis.figures import plot_token_weights, save
from zoology.analysis.palette import family_style
from zoology.analysis.retrieval import (
    Explained,
    answer_masks,
    check_layer,
    layer_token_weights,
    mass_table,
    mixer_inputs,
    open_run,
    query_masses,
    row_shares,
    test_segments,
)
from zoology.data import IGNORE_INDEX, Segment
from zoology.data.show import example_marks, legend
from zoology.data.task import KeyValueRecallConfig
from zoology.errors import UserError, cli_main
from zoology.mixers import NoTokenWeights
from zoology.utils import atomic_write_bytes

TABLE_COLUMNS = ["layer", "mixer", "slice", "mass_on_value", "mass_on_key", "accuracy", "query_accuracy", "n_queries"]


def layer_weights(explained: Explained, layer: int | None, inputs: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(layer, W (heads, L, L)) of one example (L,): of `layer`, or of the last layer with token weights; a UserError
    naming the mixer when the layer has no token-to-token form."""
    _, xs = mixer_inputs(explained.model, inputs[None])
    candidates = [layer] if layer is not None else list(reversed(range(explained.n_layers)))
    reasons = []
    for index in candidates:
        try:
            return index, layer_token_weights(explained, index, xs[index])[0]
        except NoTokenWeights as error:
            reasons.append(str(error))
    if layer is not None:
        raise UserError(
            f"layer {layer}'s mixer {explained.mixer_name(layer)} has no token-to-token form, so there is no W to "
            f"draw: {reasons[0]}; pick another layer with --layer"
        )
    names = sorted({explained.mixer_name(i) for i in candidates})
    raise UserError(f"no layer of this model has a token-to-token form (its mixers: {', '.join(names)}): {reasons[0]}")


def check_head(explained: Explained, layer: int, head: int | None, heads: int) -> None:
    if head is not None and not 0 <= head < heads:
        raise UserError(
            f"--head {head} is out of range: layer {layer} ({explained.mixer_name(layer)}) has {heads} head(s), "
            f"0 … {heads - 1}"
        )


def example_figure(
    explained: Explained, config: Any, segment: Segment, index: int, layer: int | None, head: int | None
) -> tuple[str, bytes, int]:
    """(file name, PNG bytes, layer drawn) of one example's heat map."""
    inputs, labels = segment.inputs[index], segment.labels[index]
    layer, W = layer_weights(explained, layer, inputs)
    check_head(explained, layer, head, W.shape[0])
    shares = row_shares(W)
    shown = (shares.mean(0) if head is None else shares[head]).numpy()
    queries = (labels != IGNORE_INDEX).nonzero()[:, 0].tolist()
    cells, roles = example_marks(config, inputs, labels)
    if isinstance(config, KeyValueRecallConfig):
        key, value = (m[0] for m in answer_masks(inputs[None], labels[None], config.context_len))
        answers = [(key[q].nonzero()[:, 0].tolist(), value[q].nonzero()[:, 0].tolist()) for q in queries]
        W_one = W[head : head + 1] if head is not None else W
        masses = query_masses(W_one[None], inputs[None], labels[None], config.context_len).mean(0)
        mass_note = f"mass on value {masses[0]:.2f}, on key {masses[1]:.2f} (mean over the example's queries)"
    else:
        answers = [([], []) for _ in queries]
        mass_note = f"{config.task}: no key–value pairs, no retrieval mass"
    heads = "mean over heads" if head is None else f"head {head}"
    m = explained.config
    title = (
        f"{m.name}\n{m.model.family} · layer {layer} ({explained.mixer_name(layer)}) · {heads} of {W.shape[0]}\n"
        f"test slice {segment.name}, example {index} · {mass_note}"
    )
    last = max(queries) + 1 if queries else W.shape[-1]
    fig = plot_token_weights(
        shown[queries, :last], queries, cells, roles, answers, title, legend(config), family_style(m.model.family).color
    )
    buffer = io.BytesIO()
    save(fig, buffer)
    which = "heads-mean" if head is None else f"head{head}"
    return f"{segment.name}-example{index}-layer{layer}-{which}.png", buffer.getvalue(), layer


def write_figures(explained: Explained, args: argparse.Namespace) -> list[Path]:
    """The PNGs of the first `args.num` examples of the chosen test slice, into RUN_DIR/explain or --out."""
    config, segment = test_segments(explained.config, args.slice and [args.slice])[0]
    if args.num > len(segment):
        raise UserError(f"-n {args.num}: test slice {segment.name} has {len(segment)} examples")
    from tqdm import tqdm

    paths = []
    for index in tqdm(range(args.num), desc="figures", unit="example", disable=None):
        name, png, _ = example_figure(explained, config, segment, index, args.layer, args.head)
        if args.out is None:
            paths.append(explained.run.write_explain_figure(name, png))
        else:
            atomic_write_bytes(args.out / name, png)
            paths.append(args.out / name)
    return paths


def print_table(explained: Explained, args: argparse.Namespace) -> None:
    """The retrieval mass of every layer and key–value recall test slice, then what was skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = mass_table(explained, None, args.mass_examples, args.slice and [args.slice], progress=True)
    print(f"retrieval mass of {explained.config.name} ({explained.config.model.family}), {explained.run.path}")
    print("share of each query's |W| on its key's value and on its key; mean over heads and queries")
    if table.empty:
        print("(no layer and key–value recall test slice to measure)")
    else:
        with pd.option_context("display.width", 200):
            print(table[TABLE_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for warning in caught:
        print(f"skipped: {warning.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoology.explain", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run directory with kept weights")
    parser.add_argument("-n", "--num", type=int, default=2, help="examples to draw, one PNG each (default 2)")
    parser.add_argument("--layer", type=int, help="the layer to draw (default: the last with token weights)")
    parser.add_argument("--head", type=int, help="the head to draw (default: the mean over heads)")
    parser.add_argument("--slice", help="the test slice to draw and measure (default: draw the first, measure all)")
    parser.add_argument("--mass-examples", type=int, default=64, help="examples per slice in the table (default 64)")
    parser.add_argument("--out", type=Path, help="write the PNGs here instead of RUN_DIR/explain/")
    args = parser.parse_args(argv)
    if args.num < 0 or args.mass_examples < 1:
        raise UserError(f"-n {args.num} --mass-examples {args.mass_examples}: use -n >= 0 and --mass-examples >= 1")
    explained = open_run(args.run_dir)
    if args.layer is not None:
        check_layer(explained, args.layer)
    for path in write_figures(explained, args):
        print(f"wrote {path}")
    print_table(explained, args)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
