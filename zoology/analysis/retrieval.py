"""Retrieval mass: how much of each query's token-to-token weight a trained model's layers put on its key's value.

Every mixer with a parallel form y = W·v gives its causal weights W (batch, heads, L, L) through
`token_weights(x)` (zoology.mixers). The share of query row t on a set of positions S is

    share_t(S) = Σ_{s∈S} |W[t, s]| / Σ_s |W[t, s]|        (0 for a row of zeros)

|W| keeps it in [0, 1] also for signed weights (linear attention, the selective scan, the delta rule); for softmax
weights, non-negative rows summing to 1, it is the weight itself. A query of key k labelled v (MQAR, AR, overwrite
MQAR) is answered by the context pairs (p, p + 1), p even, holding k at p and v at p + 1: every copy when the context
is repeated, only the latest pair of an overwritten key (the one whose value is the label). Its *mass on the value*
is share_t({p + 1}) and its *mass on the key* share_t({p}), both summed over the answering pairs. A slice's retrieval
mass is the mean over heads, then over every query of its examples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from zoology import results
from zoology.config import TrainConfig
from zoology.data import IGNORE_INDEX, Segment, load_segment, segment_seed
from zoology.data.task import KeyValueRecallConfig
from zoology.errors import UserError
from zoology.mixers import NoTokenWeights
from zoology.runner.rundir import RunDir

MASS_COLUMNS = [
    "run_id",
    "name",
    "family",
    "mixer",
    "layer",
    "slice",
    "mass_on_value",
    "mass_on_key",
    "accuracy",
    "query_accuracy",
    "heads",
    "n_examples",
    "n_queries",
]
"""The columns of `retrieval_mass`: accuracy is the run's recorded accuracy on the slice (final weights; NaN for
an unfinished run), query_accuracy the fraction of the measured queries the model predicts."""
WEIGHTS_BUDGET = 2**28
"""Bytes of token weights computed at once (examples per batch are chosen to stay near it)."""


@dataclass
class Explained:
    """A trained run ready to be explained: the run, its config, its model (eval mode, CPU)."""

    run: RunDir
    config: TrainConfig
    model: nn.Module

    @property
    def n_layers(self) -> int:
        return len(self.model.blocks)

    def mixer_name(self, layer: int) -> str:
        specs = self.config.model.mixers
        return specs[layer % len(specs)].name


def open_run(run_dir: str | Path) -> Explained:
    """The run's config and trained model (final weights); a UserError naming what is missing."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        raise UserError(f"{run.path}: not a run directory (no config.json)")
    if not run.weights_path("final").exists():
        raise UserError(
            f"{run.weights_path('final')}: this run kept no trained weights (model.safetensors); runs trained with "
            "the current version keep them when they finish: re-train it (python -m zoology.train CONFIG, or launch "
            "its sweep again with --force)"
        )
    config = TrainConfig.model_validate(run.config())
    try:
        model = results.load_model(run.path)
    except (FileNotFoundError, ValueError) as error:  # weights that do not load or do not fit the config
        raise UserError(str(error)) from None
    return Explained(run, config, model)


def check_layer(explained: Explained, layer: int) -> None:
    n = explained.n_layers
    if not 0 <= layer < n:
        raise UserError(f"layer {layer} is out of range: the model has {n} layer(s), 0 … {n - 1}")


def test_segments(config: TrainConfig, slices: list[str] | None = None) -> list[tuple[Any, Segment]]:
    """(segment config, segment) of the run's test slices, built exactly as in training (seed from data.seed,
    data.cache_dir); with `slices`, only those named (an unknown name is a UserError listing the slices)."""
    data = config.data
    built = [
        (seg, load_segment(seg, segment_seed(data.seed, "test", i), data.cache_dir)) for i, seg in enumerate(data.test)
    ]
    if slices is None:
        return built
    names = [segment.name for _, segment in built]
    unknown = [s for s in slices if s not in names]
    if unknown:
        raise UserError(f"no test slice {', '.join(unknown)} in this run; its test slices are {', '.join(names)}")
    return [(seg, segment) for seg, segment in built if segment.name in slices]


@torch.no_grad()
def mixer_inputs(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits (batch, L, vocab), each layer's mixer input (batch, L, d_model)) of (batch, L) token ids, the inputs
    captured by forward hooks on the blocks' mixers."""
    captured: list[torch.Tensor] = []
    hooks = [
        block.mixer.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
        for block in model.blocks
    ]
    try:
        logits = model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, captured


def layer_token_weights(explained: Explained, layer: int, x: torch.Tensor) -> torch.Tensor:
    """W (batch, heads, L, L) of layer `layer` for its mixer input x; NoTokenWeights naming the mixer when it has no
    token-to-token form."""
    mixer = explained.model.blocks[layer].mixer
    if not hasattr(mixer, "token_weights"):
        raise NoTokenWeights(f"{explained.mixer_name(layer)} (layer {layer}) does not define token_weights")
    return mixer.token_weights(x)


def row_shares(W: torch.Tensor) -> torch.Tensor:
    """|W| normalised per row, (..., L, L) -> (..., L, L): each row sums to 1 (a row of zeros stays zero)."""
    magnitude = W.abs()
    return magnitude / magnitude.sum(-1, keepdim=True).clamp_min(torch.finfo(magnitude.dtype).tiny)


def answer_masks(inputs: torch.Tensor, labels: torch.Tensor, context_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(key, value) masks (batch, L, L) of key–value recall examples: key[b, t, p] when t is a query whose answering
    pair starts at p (p even, p + 1 < context_len, token at t at p, the label of t at p + 1); value is key shifted by
    one position."""
    batch, L = inputs.shape
    position = torch.arange(L, device=inputs.device)
    pair_start = (position % 2 == 0) & (position + 1 < context_len)
    following = torch.cat([inputs[:, 1:], inputs.new_full((batch, 1), -1)], dim=1)
    key = (inputs[:, None, :] == inputs[:, :, None]) & (following[:, None, :] == labels[:, :, None])
    key &= pair_start[None, None, :] & (labels != IGNORE_INDEX)[:, :, None]
    value = torch.zeros_like(key)
    value[:, :, 1:] = key[:, :, :-1]
    return key, value


def query_masses(W: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, context_len: int) -> torch.Tensor:
    """(queries, 2): per query (labelled position, example-major order) its mass on the value and on the key,
    means over the heads of W (batch, heads, L, L)."""
    key, value = answer_masks(inputs, labels, context_len)
    shares = row_shares(W)
    heads = W.shape[1]
    on_value = torch.einsum("bhts,bts->bt", shares, value.to(shares.dtype)) / heads  # (batch, L)
    on_key = torch.einsum("bhts,bts->bt", shares, key.to(shares.dtype)) / heads
    queries = labels != IGNORE_INDEX
    return torch.stack([on_value[queries], on_key[queries]], dim=1)


@dataclass
class SliceSums:
    """Running sums of one (layer, slice): masses, queries, and the heads W had."""

    value: float = 0.0
    key: float = 0.0
    queries: int = 0
    heads: int = 0

    def add(self, masses: torch.Tensor, heads: int) -> None:
        self.value += float(masses[:, 0].sum())
        self.key += float(masses[:, 1].sum())
        self.queries += masses.shape[0]
        self.heads = heads


def slice_masses(
    explained: Explained,
    layers: list[int],
    config: Any,
    segment: Segment,
    n_examples: int,
    skipped: set[int],
    progress: Any = None,
) -> tuple[dict[int, SliceSums], float]:
    """Per layer with token weights the summed masses of the first `n_examples` examples, and the fraction of their
    queries the model predicts. Layers without token weights are left out, added to `skipped` with a warning the
    first time."""
    inputs, labels = segment.inputs[:n_examples], segment.labels[:n_examples]
    sums: dict[int, SliceSums] = {}
    correct, total, per_batch, start = 0, 0, 1, 0
    while start < len(inputs):
        part = slice(start, min(start + per_batch, len(inputs)))
        logits, xs = mixer_inputs(explained.model, inputs[part])
        queries = labels[part] != IGNORE_INDEX
        correct += int((logits.argmax(-1)[queries] == labels[part][queries]).sum())
        total += int(queries.sum())
        biggest = 0
        for layer in layers:
            if layer in skipped:
                continue
            try:
                W = layer_token_weights(explained, layer, xs[layer])
            except NoTokenWeights as error:
                skipped.add(layer)
                warnings.warn(f"retrieval mass skips layer {layer}: {error}", stacklevel=3)
                continue
            masses = query_masses(W, inputs[part], labels[part], config.context_len)
            sums.setdefault(layer, SliceSums()).add(masses, W.shape[1])
            biggest = max(biggest, W[0].numel() * W.element_size())
        if progress is not None:
            progress.update(part.stop - part.start)
        start = part.stop
        per_batch = max(1, WEIGHTS_BUDGET // max(biggest, 1))
    return sums, correct / max(total, 1)


def recorded_accuracy(run: RunDir, slice_name: str) -> float:
    """The run's final-weights accuracy on a test slice (result.json), NaN if it has not finished."""
    if not run.is_finished():
        return float("nan")
    return float(run.result()["last"]["slices"].get(slice_name, float("nan")))


def retrieval_mass(
    run_dir: str | Path,
    layer: int | None = None,
    n_examples: int = 64,
    slices: list[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (layer, key–value recall test slice) of a trained run (columns MASS_COLUMNS): the mean share of a
    query's |W| on its key's value and on its key, over the heads and the queries of the slice's first `n_examples`
    examples (the module docstring gives the definition). `layer` picks one layer (default: all); layers whose
    mixer has no token-to-token form are skipped with a warning, as are slices of other tasks. `progress` shows a
    progress bar on stderr."""
    explained = open_run(run_dir)
    return mass_table(explained, layer, n_examples, slices, progress)


def mass_table(
    explained: Explained, layer: int | None, n_examples: int, slices: list[str] | None, progress: bool
) -> pd.DataFrame:
    """`retrieval_mass` of an opened run."""
    if layer is not None:
        check_layer(explained, layer)
    if n_examples < 1:
        raise UserError(f"n_examples={n_examples}: measure at least 1 example per slice")
    layers = list(range(explained.n_layers)) if layer is None else [layer]
    chosen = []
    for config, segment in test_segments(explained.config, slices):
        if isinstance(config, KeyValueRecallConfig):
            chosen.append((config, segment))
        else:
            warnings.warn(
                f"retrieval mass skips test slice {segment.name}: it is defined for key–value recall tasks "
                f"(mqar, ar, mqar_overwrite), not {config.task}",
                stacklevel=3,
            )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=sum(min(n_examples, len(s)) for _, s in chosen), unit="example", desc="retrieval mass", disable=None
        )
    rows, skipped = [], set()
    try:
        for config, segment in chosen:
            sums, query_accuracy = slice_masses(explained, layers, config, segment, n_examples, skipped, bar)
            for index, s in sorted(sums.items()):
                rows.append(_row(explained, index, segment, s, query_accuracy, min(n_examples, len(segment))))
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows, columns=MASS_COLUMNS)


def _row(explained: Explained, layer: int, segment: Segment, sums: SliceSums, query_accuracy: float, n: int) -> dict:
    config = explained.config
    return {
        "run_id": config.run_id,
        "name": config.name,
        "family": config.model.family,
        "mixer": explained.mixer_name(layer),
        "layer": layer,
        "slice": segment.name,
        "mass_on_value": sums.value / max(sums.queries, 1),
        "mass_on_key": sums.key / max(sums.queries, 1),
        "accuracy": recorded_accuracy(explained.run, segment.name),
        "query_accuracy": query_accuracy,
        "heads": sums.heads,
        "n_examples": n,
        "n_queries": sums.queries,
    }
