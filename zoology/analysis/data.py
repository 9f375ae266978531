"""What the figures show, as DataFrames: accuracy choice, best learning rate, Pareto fronts, slice
matrices and training curves. Drawing lives in zoology.analysis.figures.

A *model* is one configuration with its learning rate and seeds left out (e.g. attention at
d_model=64); a *family* is what shares a colour (by default the mixers a model uses). Each model is
shown at its best learning rate, its accuracy averaged over seeds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from zoology import results
from zoology.config import DataConfig, TrainConfig, family_name
from zoology.runner.rundir import readable_runs

Metric = Literal["last", "best"]

SEED_FIELDS = ("seed", "data.seed")
NOT_MODEL_FIELDS = (
    "lr",
    *SEED_FIELDS,
    *TrainConfig.LAUNCH_FIELDS,
    *(f"data.{name}" for name in DataConfig.LAUNCH_FIELDS),
)
FAMILY = "family"


@dataclass(frozen=True)
class Axis:
    """The x quantity of a frontier: a results column, scaled, and which direction is better."""

    column: str
    label: str
    better: Literal["lower", "higher"] = "lower"
    scale: float = 1.0
    log: bool = True
    missing_hint: str = ""


def state_axis(unit: Literal["elements", "bytes"] = "elements") -> Axis:
    """Recurrent state per sequence summed over layers at the longest test length (`state_size`);
    `bytes` multiplies by 4 (fp32), the unit of the Based paper's figure."""
    if unit not in ("elements", "bytes"):
        raise ValueError(f"unit={unit!r}: use 'elements' or 'bytes'")
    if unit == "bytes":
        return Axis("state_size", "recurrent state{at} (bytes per sequence at fp32)", scale=4.0)
    return Axis("state_size", "recurrent state{at} (elements per sequence)")


def throughput_axis(column: str = "decode_tokens_per_s") -> Axis:
    """Measured generation speed (higher is better) from the throughput benchmark's columns:
    `decode_tokens_per_s` (the measured point nearest its reference batch and prompt, named in the
    label) or `decode_tokens_per_s.B{batch}.P{prompt}`."""
    kind, _, point = column.partition("_tokens_per_s")
    match = re.fullmatch(r"\.B(\d+)\.P(\d+)", point)
    detail = f", batch {match[1]}, prompt {match[2]}" if match else "{point}"
    known = "_tokens_per_s" in column and kind and (match or not point)
    label = f"{kind} throughput{{on}} (tokens/s{detail})" if known else column
    return Axis(
        column,
        label,
        better="higher",
        missing_hint=f"measure it first with `{THROUGHPUT_HINT}`",
    )


THROUGHPUT_HINT = "python -m zoology.bench throughput --sweep <sweep dir> -B 1 -P 256"
"""How to measure a sweep's decode speed; `-B 1 -P 256` takes seconds per model on a CPU (drop them
for the full grid on a GPU)."""


def perplexity_axis(metric: Metric = "last") -> Axis:
    """Validation perplexity on held-out text (lower is better), of runs that train on text beside
    recall: `perplexity_last` (or `_best`, at the best epoch), every text test slice pooled."""
    return Axis(
        f"perplexity_{metric}",
        f"validation perplexity ({metric} epoch, held-out text)",
        log=False,
        missing_hint="train on text too (a `task: text` test segment) to have one",
    )


def resolve_axis(x: str | Axis, unit: Literal["elements", "bytes"] = "elements", column: str | None = None) -> Axis:
    """'state', 'throughput', 'perplexity' or an Axis; `column` overrides the preset's column."""
    if isinstance(x, Axis):
        axis = x
    elif x == "state":
        axis = state_axis(unit)
    elif x == "throughput":
        axis = throughput_axis(column or "decode_tokens_per_s")
    elif x == "perplexity":
        axis = perplexity_axis("best" if column == "perplexity_best" else "last")
    else:
        raise ValueError(f"x={x!r}: use 'state', 'throughput', 'perplexity' or an Axis")
    if column is not None and column != axis.column:
        axis = replace(axis, column=column, label=f"{column}")
    return axis


def mixer_family(model: str) -> str:
    """'base_conv+attention' stays; 'base_conv+base_conv' becomes 'base_conv'."""
    return "+".join(dict.fromkeys(model.split("+")))


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def slice_names(df: pd.DataFrame) -> list[str]:
    """Test slices present in a results frame, ordered by length then number of pairs."""
    prefix = "acc_last."
    return sorted((c[len(prefix) :] for c in df.columns if c.startswith(prefix)), key=natural_key)


def text_slice_names(df: pd.DataFrame) -> list[str]:
    """The language-modelling (text) slices of a results frame: those with a perplexity column."""
    return [name for name in slice_names(df) if f"perplexity_last.{name}" in df]


def select_slices(df: pd.DataFrame, patterns: list[str] | None) -> list[str]:
    """Slice names matching any of the shell-style `patterns`; when None, the recall slices (every
    slice but text, whose accuracy is next-token accuracy; all slices when there is nothing else)."""
    available = slice_names(df)
    if not patterns:
        text = text_slice_names(df)
        return [name for name in available if name not in text] or available
    chosen = []
    for pattern in patterns:
        matched = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(f"slices: {pattern!r} matches no test slice; the results have {available}")
        chosen += [m for m in matched if m not in chosen]
    return sorted(chosen, key=natural_key)


def accuracy(df: pd.DataFrame, metric: Metric = "last", slices: list[str] | None = None) -> pd.Series:
    """Per run: the unweighted mean of the chosen test slices' accuracy at the last or best epoch.

    With `slices` None every recall slice a run was tested on while it trained counts (the Based
    figure's mean over its seven test segments); slices added later by `python -m zoology.eval` count
    only when named. With patterns, a run missing one of the chosen slices gets NaN.
    """
    if metric not in ("last", "best"):
        raise ValueError(f"metric={metric!r}: use 'last' or 'best'")
    names = select_slices(df, slices)
    columns = df[[f"acc_{metric}.{name}" for name in names]]
    if not slices and "evaluated_slices" in df:
        added = df["evaluated_slices"].map(lambda v: v if isinstance(v, list) else [])
        columns = columns.mask(pd.DataFrame({f"acc_{metric}.{n}": added.map(lambda a, n=n: n in a) for n in names}))
    mean = columns.mean(axis=1, skipna=True)
    if slices:
        mean = mean.mask(columns.isna().any(axis=1))
    return mean.rename("accuracy")


def accuracy_label(df: pd.DataFrame, metric: Metric = "last", slices: list[str] | None = None) -> str:
    names = select_slices(df, slices)
    which = f"{metric} epoch"
    if len(names) == 1:
        return f"accuracy ({which}, {names[0]})"
    if not slices and df[[f"acc_{metric}.{name}" for name in names]].isna().any(axis=None):
        return f"accuracy ({which}, mean of each run's test slices)"
    return f"accuracy ({which}, mean of {len(names)} test slices)"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value


def model_fields(row: pd.Series) -> dict[str, Any]:
    """The config of one results row, flattened to dotted paths, without lr, seeds and launch fields."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if not str(column).startswith("config."):
            continue
        if not isinstance(value, (dict, list, tuple)) and pd.isna(value):
            continue
        _flatten(value, str(column)[len("config.") :], out)
    return {k: v for k, v in out.items() if not any(k == f or k.startswith(f + ".") for f in NOT_MODEL_FIELDS)}


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix that no other key ends with."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        out[key] = suffix
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def model_labels(fields: pd.Series, families: pd.Series) -> pd.Series:
    """'d_model=64' style labels naming what varies between the models of each family."""
    labels = pd.Series("", index=fields.index, dtype=object)
    for _, index in families.groupby(families).groups.items():
        group = fields.loc[index]
        keys = sorted({k for f in group for k in f})
        varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in group}) > 1]
        short = _short_names(varying)
        for i in index:
            labels[i] = " ".join(f"{short[k]}={_format_value(fields[i].get(k))}" for k in varying)
    return labels


def annotate_models(df: pd.DataFrame, family_column: str = FAMILY) -> pd.DataFrame:
    """Add `family` (from the mixers unless `family_column` names another column), `model_key`
    (the config without lr and seeds) and `model_label` to a results frame."""
    if df.empty:
        raise ValueError("no finished runs to show")
    out = df.copy()
    if family_column == FAMILY and FAMILY not in out:
        out[FAMILY] = out["model"].map(mixer_family)
    elif family_column not in out:
        raise ValueError(f"family_column={family_column!r} is not a results column")
    else:
        out[FAMILY] = out[family_column].astype(str)
    fields = out.apply(model_fields, axis=1)
    out["model_key"] = fields.map(lambda f: json.dumps(f, sort_keys=True, default=str))
    unique = fields.groupby(out["model_key"]).first()
    families = out.groupby("model_key")[FAMILY].first()
    out["model_label"] = out["model_key"].map(model_labels(unique, families))
    return out


def pareto_mask(x: np.ndarray, y: np.ndarray, x_better: Literal["lower", "higher"] = "lower") -> np.ndarray:
    """True where no other point is at least as good in both x and y and better in one (y: higher)."""
    x = np.asarray(x, dtype=float) * (1.0 if x_better == "lower" else -1.0)
    y = np.asarray(y, dtype=float)
    no_worse = (x[None, :] <= x[:, None]) & (y[None, :] >= y[:, None])
    better = (x[None, :] < x[:, None]) | (y[None, :] > y[:, None])
    return ~(no_worse & better).any(axis=1)


def frontier_points(
    df: pd.DataFrame,
    x: str | Axis = "state",
    metric: Metric = "last",
    slices: list[str] | None = None,
    family_column: str = FAMILY,
    facet: str | None = None,
) -> pd.DataFrame:
    """One row per model at its best learning rate, with x, accuracy and a Pareto flag.

    Accuracy is averaged over seeds (`accuracy_std`, `n_seeds` beside it) before the learning rate
    with the highest mean is chosen (ties: the smaller lr). `pareto` marks the points no other
    point of the same family (and facet) beats on both axes. `lrs` lists every lr tried.
    """
    axis = resolve_axis(x)
    if df.empty:
        raise ValueError("no finished runs to show")
    if axis.column not in df:
        near = [c for c in df.columns if "per_s" in c or "throughput" in c or c.startswith("perplexity")]
        hint = f"; {axis.missing_hint}" if axis.missing_hint else ""
        raise ValueError(
            f"x column {axis.column!r} is not in the results{hint}. Columns that look related: {near or 'none'}"
        )
    if facet and facet not in df:
        raise ValueError(f"facet={facet!r} is not a results column")
    runs = annotate_models(df, family_column)
    runs["accuracy"] = accuracy(runs, metric, slices)
    runs["x"] = runs[axis.column].astype(float) * axis.scale
    for what, column in (("accuracy", "accuracy"), (f"{axis.column!r}", "x")):
        missing = runs[column].isna()
        if missing.all():
            raise ValueError(f"no run has a value for {what}")
        if missing.any():
            warnings.warn(
                f"{int(missing.sum())} run(s) have no {what} and are left out: "
                f"{', '.join(runs.loc[missing, 'name'].astype(str))}",
                stacklevel=2,
            )
            runs = runs[~missing]
    keys = [FAMILY, "model_key"] + ([facet] if facet else [])

    per_lr = (
        runs.groupby([*keys, "config.lr"], sort=True, dropna=False)
        .agg(
            model_label=("model_label", "first"),
            x=("x", "mean"),
            accuracy=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            n_seeds=("accuracy", "size"),
            params=("params", "mean"),
            state_size=("state_size", "mean"),
            name=("name", "first"),
            run_ids=("run_id", list),
        )
        .reset_index()
        .rename(columns={"config.lr": "lr"})
    )
    tried = per_lr.groupby(keys, dropna=False)["lr"].agg(list).rename("lrs")
    best = per_lr.loc[per_lr.groupby(keys, dropna=False)["accuracy"].idxmax()]
    points = best.merge(tried, left_on=keys, right_index=True)
    points["pareto"] = False
    for _, index in points.groupby([FAMILY, facet] if facet else FAMILY, dropna=False).groups.items():
        group = points.loc[index]
        points.loc[index, "pareto"] = pareto_mask(group["x"].to_numpy(), group["accuracy"].to_numpy(), axis.better)
    order = [facet] if facet else []
    points = points.sort_values([*order, FAMILY, "x", "accuracy"], kind="stable").reset_index(drop=True)
    columns = [
        FAMILY,
        "model_label",
        *order,
        "x",
        "accuracy",
        "accuracy_std",
        "n_seeds",
        "lr",
        "lrs",
        "pareto",
        "params",
        "state_size",
        "name",
        "run_ids",
        "model_key",
    ]
    return points[columns]


def axis_label(axis: Axis, df: pd.DataFrame) -> str:
    """The axis label, with the sequence length the state is measured at (or the device throughput
    was measured on, and at which batch and prompt) when the runs share one."""
    at = on = point = ""
    if axis.column == "state_size" and "state_seq_len" in df:
        lengths = df["state_seq_len"].dropna().unique()
        at = f" at L={int(lengths[0])}" if len(lengths) == 1 else " at the longest test length"
    if "throughput_device" in df:
        devices = df["throughput_device"].dropna().unique()
        on = f" on {devices[0]}" if len(devices) == 1 else ""
    if {"throughput_batch_size", "throughput_context"} <= set(df.columns):
        measured = df.loc[df[axis.column].notna(), ["throughput_batch_size", "throughput_context"]].drop_duplicates()
        ref = results.THROUGHPUT_REFERENCE
        if len(measured) == 1:
            b, p = (int(v) for v in measured.iloc[0])
            point = f", batch {b}, prompt {p}"
            if (b, p) != (ref["batch_size"], ref["context"]):
                point += f": nearest measured to {ref['batch_size']} x {ref['context']}"
        elif len(measured) > 1:
            point = f", batch and prompt per run: nearest measured to {ref['batch_size']} x {ref['context']}"
    return axis.label.replace("{at}", at).replace("{on}", on).replace("{point}", point)


def slice_matrix(
    df: pd.DataFrame,
    metric: Metric = "last",
    slices: list[str] | None = None,
    family_column: str = FAMILY,
) -> pd.DataFrame:
    """Accuracy of each model (rows, best lr, mean over seeds) on each test slice (columns).

    The best lr is the one the frontier uses (chosen on the mean of `slices`); every slice is shown.
    Rows are ordered by family then state size; a slice a model was not tested on is NaN.
    """
    points = frontier_points(df, "state", metric, slices, family_column)
    names = slice_names(df)
    by_run = df.set_index("run_id")
    rows = {}
    for _, p in points.iterrows():
        label = f"{p[FAMILY]} {p['model_label']}".strip()
        rows[label] = by_run.loc[p["run_ids"], [f"acc_{metric}.{n}" for n in names]].mean(axis=0).to_numpy()
    matrix = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    matrix.index.name = "model"
    matrix.columns.name = "slice"
    return matrix


def load_curves(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per (run, epoch) from every run's metrics.jsonl, finished or not.

    Columns: run_id, name, model and d_model (as in `results.load` and `load_slices`), family,
    finished, epoch, train_loss, valid_loss, valid_acc, lr (the epoch's learning rate, which a
    schedule moves; the config's is `results.load`'s lr), epoch_time, tokens_per_s and
    `valid_acc.<slice>` per test slice (valid_* are the test segments);
    token_acc, macro_acc; with validation segments `validation.acc`, `validation.token_acc`, …; and
    `status` ('diverged' on the epoch whose loss was not finite). Numbers written as null are NaN; a
    damaged run directory is left out with a warning naming the file.
    """
    rows = []
    for run in readable_runs(sweep_dir, finished=False):
        config = run.config()
        model = family_name(m["name"] for m in config["model"]["mixers"])
        for record in run.metrics():
            row = {
                "run_id": run.path.name,
                "name": config.get("name") or run.path.name,
                "model": model,
                "d_model": config["model"]["d_model"],
                "family": mixer_family(model),
                "finished": run.is_finished(),
            }
            row.update({k: v for k, v in record.items() if k not in ("slices", "validation")})
            row.update({f"validation.{k}": v for k, v in record.get("validation", {}).items()})
            row.update({f"valid_acc.{k}": v for k, v in record.get("slices", {}).items()})
            rows.append(row)
    if not rows:
        raise ValueError(f"{sweep_dir}: no run has logged an epoch yet")
    labels = {"run_id", "name", "model", "family", "finished", "status"}
    return results.nulls_as_nan(pd.DataFrame(rows), numeric=lambda column: column not in labels)


def run_table(df: pd.DataFrame, slices: list[str] | None = None) -> pd.DataFrame:
    """A compact per-run table, sorted for reading: family, model, lr, size; `acc_last` and
    `acc_best`, the accuracies the figures use (the unweighted mean of the chosen test slices at the
    last and the best epoch); epochs (and whether early stopping ended the run), seconds, threads."""
    runs = annotate_models(df)
    runs["acc_last"] = accuracy(runs, "last", slices).round(4)
    runs["acc_best"] = accuracy(runs, "best", slices).round(4)
    runs["time_s"] = runs["wall_time"].astype(float).round(1)
    columns = {
        FAMILY: FAMILY,
        "model_label": "model",
        "config.lr": "lr",
        "config.seed": "seed",
        "params": "params",
        "state_size": "state",
        "acc_last": "acc_last",
        "acc_best": "acc_best",
        "best_epoch": "best_epoch",
        "epochs": "epochs",
        "stopped_early": "stopped_early",
        "time_s": "time_s",
        "threads": "threads",
        "name": "name",
    }
    table = runs[[c for c in columns if c in runs]].rename(columns=columns)
    return table.sort_values([FAMILY, "state", "lr", "seed"], kind="stable").reset_index(drop=True)
