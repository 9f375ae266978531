"""Task scores of a sweep over synthetic tasks (the MAD protocol): per family and setting the best
accuracy over the hyperparameters, then per task the mean over its settings.

A *setting* is everything a run's config says about the data and training except the learning rate,
weight decay and seeds (and the model, whose vocabulary and read-out follow the data); a *family* is
the mixers a model uses. Runs of one family at one setting are its hyperparameter choices: seeds
are averaged first, then the best (lr, weight decay, or anything else the family's runs differ in)
is taken.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from zoology.analysis.data import FAMILY, annotate_models, model_fields
from zoology.config import segment_adapter
from zoology.data import slice_name
from zoology.data.presets import MAD_TASKS

ACCURACIES = {"token": "token_acc", "macro": "macro_acc", "example": "acc"}
"""Which accuracy a score uses: of all labelled positions (token, MAD's main number), class-balanced
(macro, what the MAD reference reports), or the mean over examples of their fraction right."""
METRICS = ("selected", "last", "best")
"""At which epoch: selected on the validation segments (MAD's protocol), the last, or the best test epoch."""
HYPERPARAMETERS = ("lr", "weight_decay", "seed")


def score_column(accuracy: str = "token", metric: str = "selected") -> str:
    """The results column of an accuracy at an epoch, e.g. 'token_acc_selected'."""
    if accuracy not in ACCURACIES:
        raise ValueError(f"accuracy={accuracy!r}: use one of {', '.join(ACCURACIES)}")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: use one of {', '.join(METRICS)}")
    return f"{ACCURACIES[accuracy]}_{metric}"


def _setting(fields: dict[str, Any]) -> str:
    """The setting part of a run's flattened config: no model, no hyperparameters."""
    kept = {k: v for k, v in fields.items() if not k.startswith("model.") and k.split(".")[0] not in HYPERPARAMETERS}
    return json.dumps(kept, sort_keys=True, default=str)


def _describe(test: list[dict], train: list[dict]) -> tuple[str, str, int]:
    """(task, the first test segment's slice name, training sequences)."""
    first = segment_adapter.validate_python(test[0])
    return first.task, slice_name(first.slice_fields()), sum(s["num_examples"] for s in train)


def setting_scores(df: pd.DataFrame, accuracy: str = "token", metric: str = "selected") -> pd.DataFrame:
    """One row per (family, setting): task, setting (test slice name), train_examples, score (the
    best over the hyperparameters of the seed-mean accuracy), lr and weight_decay of that best, and
    runs (how many runs the setting had)."""
    column = score_column(accuracy, metric)
    if df.empty:
        raise ValueError("no finished runs to score")
    if column not in df or df[column].isna().all():
        have = sorted(c for c in df.columns if c.split("_")[-1] in METRICS and "acc" in c and "." not in c)
        hint = " (selected needs runs with data.valid)" if metric == "selected" else ""
        raise ValueError(f"no run has {column!r}{hint}; the results have {have}")
    runs = annotate_models(df)
    fields = runs.apply(model_fields, axis=1)
    runs["setting_key"] = fields.map(_setting)
    described = runs.apply(lambda r: _describe(r["config.data.test"], r["config.data.train"]), axis=1)
    runs["task"], runs["setting"], runs["train_examples"] = zip(*described)
    runs["score"] = runs[column]
    keys = [FAMILY, "task", "setting_key"]
    per_choice = (
        runs.groupby([*keys, "config.lr", "config.weight_decay"], dropna=False)
        .agg(score=("score", "mean"), setting=("setting", "first"), train_examples=("train_examples", "first"))
        .reset_index()
    )
    best = per_choice.loc[per_choice.groupby(keys)["score"].idxmax()]
    counts = runs.groupby(keys).size().rename("runs")
    table = best.merge(counts, left_on=keys, right_index=True)
    table = table.rename(columns={"config.lr": "lr", "config.weight_decay": "weight_decay"})
    order = {task: i for i, task in enumerate(MAD_TASKS)}
    table["_order"] = table["task"].map(lambda t: order.get(t, len(order)))
    table = table.sort_values([FAMILY, "_order", "task", "setting", "train_examples"], kind="stable")
    columns = [FAMILY, "task", "setting", "train_examples", "score", "lr", "weight_decay", "runs"]
    return table[columns].reset_index(drop=True)


def task_scores(df: pd.DataFrame, accuracy: str = "token", metric: str = "selected") -> pd.DataFrame:
    """Families (rows) × tasks (columns, the MAD tasks first in their order) of the mean over a task's
    settings of each setting's best accuracy over hyperparameters, and `mean` over the tasks (NaN for
    a family missing a task others have). Default: token accuracy at the epoch selected on the
    validation segments."""
    settings = setting_scores(df, accuracy, metric)
    table = settings.pivot_table(index=FAMILY, columns="task", values="score", aggfunc="mean")
    tasks = sorted(table.columns, key=lambda t: (MAD_TASKS.index(t) if t in MAD_TASKS else len(MAD_TASKS), t))
    table = table[tasks]
    table["mean"] = table.mean(axis=1, skipna=False)
    table.columns.name = "task"
    return table.sort_values("mean", ascending=False, kind="stable")
