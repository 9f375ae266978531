"""A sweep directory as pandas DataFrames: one row per finished run (`load`), per (run, test slice)
(`load_slices`, slices added by `python -m zoology.eval` included), and a run's trained model
(`load_model`); the run directories are read through
zoology.runner.rundir, their one reader."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from zoology.config import TrainConfig, family_name
from zoology.model import LanguageModel
from zoology.runner.rundir import RunDir, Weights, readable_runs

THROUGHPUT_REFERENCE = {"batch_size": 64, "context": 1024}
"""The (batch size, prompt length) the plain `prefill_tokens_per_s` / `decode_tokens_per_s` columns
aim at: that point when it was measured, else the measured point nearest to it."""


def result_row(result: dict, config: dict) -> dict[str, Any]:
    """Flatten one finished run into a results row."""
    row: dict[str, Any] = {
        "run_id": result["run_id"],
        "name": result["name"],
        "model": family_name(m["name"] for m in config["model"]["mixers"]),
        "d_model": config["model"]["d_model"],
        "lr": config["lr"],
    }
    for key, value in pd.json_normalize(config, sep=".").iloc[0].items():
        row[f"config.{key}"] = value
    for key in (
        "params",
        "state_size",
        "state_seq_len",
        "epochs",
        "stopped_early",
        "wall_time",
        "train_tokens_per_s",
        "device",
        "threads",
        "version",
    ):
        row[key] = result.get(key)
    for which in ("last", "best", "selected"):
        if which not in result:
            continue
        row[f"acc_{which}"] = result[which]["acc"]
        for metric in ("token_acc", "macro_acc"):
            row[f"{metric}_{which}"] = result[which].get(metric)
        for name, acc in result[which]["slices"].items():
            row[f"acc_{which}.{name}"] = acc
        if "perplexity" in result[which]:
            row[f"perplexity_{which}"] = result[which]["perplexity"]
            for name, value in result[which]["perplexity_slices"].items():
                row[f"perplexity_{which}.{name}"] = value
    row["best_epoch"] = result["best"]["epoch"]
    if "selected" in result:
        row["selected_epoch"] = result["selected"]["epoch"]
        row["valid_token_acc_selected"] = result["selected"]["validation"]["token_acc"]
    return row


def nearest_point(points: list[dict]) -> dict:
    """The measured point nearest THROUGHPUT_REFERENCE: the fewest doublings of batch size and prompt
    length away (ties: the longer prompt, then the larger batch)."""
    ref_b, ref_p = THROUGHPUT_REFERENCE["batch_size"], THROUGHPUT_REFERENCE["context"]

    def distance(p: dict) -> tuple:
        far = abs(math.log2(p["batch_size"] / ref_b)) + abs(math.log2(p["context"] / ref_p))
        return far, -p["context"], -p["batch_size"]

    return min(points, key=distance)


def throughput_columns(run: RunDir, device: str | None = None) -> dict[str, Any]:
    """The latest throughput entry of a run (on a device whose name contains `device`, if given):
    the device; `prefill_tokens_per_s` and `decode_tokens_per_s` at the reference point, or at the
    measured point nearest it (`throughput_batch_size`, `throughput_context` say which); and every
    point as `decode_tokens_per_s.B{batch}.P{context}` (likewise prefill)."""
    data = run.throughput()
    if data is None:
        return {}
    entries = [
        e
        for name, by_dtype in data["results"].items()
        if device is None or device.lower() in name.lower()
        for e in by_dtype.values()
    ]
    if not entries or not any(e["points"] for e in entries):
        return {}
    entry = max((e for e in entries if e["points"]), key=lambda e: e["measured_at"])
    row: dict[str, Any] = {"throughput_device": entry["device"], "throughput_dtype": entry["dtype"]}
    for p in entry["points"]:
        for kind in ("prefill", "decode"):
            row[f"{kind}_tokens_per_s.B{p['batch_size']}.P{p['context']}"] = p.get(f"{kind}_tokens_per_s")
    near = nearest_point(entry["points"])
    row["throughput_batch_size"], row["throughput_context"] = near["batch_size"], near["context"]
    for kind in ("prefill", "decode"):
        row[f"{kind}_tokens_per_s"] = near.get(f"{kind}_tokens_per_s")
    row["decode_x_floor"] = near.get("decode_x_floor")  # measured step time / its memory floor
    return row


def load(sweep_dir: str | Path, throughput_device: str | None = None) -> pd.DataFrame:
    """One row per finished run of a sweep directory (runs without result.json are left out): its config
    as `config.*`, size, times, `acc_last` / `acc_best` overall and as `acc_last.<slice>` per test slice,
    and for language-modelling slices `perplexity_last` (all of them pooled) and
    `perplexity_last.<slice>` (likewise `_best`, at the best epoch); with
    throughput columns where the run has a throughput.json (see `throughput_columns`); or the rows
    of a CSV saved from such a table (`load(d).to_csv(path, index=False)`), lists and dicts restored.
    A number recorded as null (it was NaN or infinite) is NaN; a damaged run directory is left out
    with a warning naming the file (zoology.runner.rundir.readable_runs)."""
    if Path(sweep_dir).suffix == ".csv":
        return read_table(sweep_dir)
    rows = [
        result_row(r.result(), r.config()) | evaluation_columns(r) | throughput_columns(r, throughput_device)
        for r in readable_runs(sweep_dir)
    ]
    return nulls_as_nan(pd.DataFrame(rows))


METRIC_PREFIXES = (
    "acc_",
    "token_acc_",
    "macro_acc_",
    "perplexity_",
    "valid_token_acc_",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
)
"""The columns of accuracies, perplexities and speeds (`acc_last`, `acc_best.<slice>`, …)."""


def nulls_as_nan(table: pd.DataFrame, numeric=lambda column: column.startswith(METRIC_PREFIXES)) -> pd.DataFrame:
    """`table` with its `numeric(column)` columns as floats: a number written as null (it was NaN or
    infinite; run-directory JSON is strict) is NaN, even where a column holds nothing else."""
    for column in table.columns:
        if numeric(column) and table[column].dtype == object:
            table[column] = table[column].astype(float)
    return table


def evaluation_columns(run: RunDir) -> dict[str, Any]:
    """The slices `python -m zoology.eval` added to a run, as `acc_last.<slice>` (final weights),
    `acc_best.<slice>` (best-epoch weights) and `perplexity_last.<slice>` columns beside its own, and
    `evaluated_slices`, their names (the frontier's default mean leaves them out). A slice the run was
    already tested on keeps its own numbers."""
    own = {s["slice"] for s in run.result()["slices"]}
    row: dict[str, Any] = {}
    names = []
    for s in evaluated_slices(run):
        if s["slice"] in own:
            continue
        names.append(s["slice"])
        for key in ("acc_last", "acc_best"):  # both always: NaN for weights not evaluated on it
            row[f"{key}.{s['slice']}"] = s[key] if s[key] is not None else float("nan")
        for key in ("perplexity_last", "perplexity_best"):
            if s.get(key) is not None:
                row[f"{key}.{s['slice']}"] = s[key]
    return row | {"evaluated_slices": names} if names else row


def read_table(path: str | Path) -> pd.DataFrame:
    """A results table from CSV, with the list and dict cells (configs, slices) parsed back."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no results table {str(path)!r}")
    df = pd.read_csv(path)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype(object).map(_literal)
    for position, (column, source) in enumerate((("d_model", "config.model.d_model"), ("lr", "config.lr")), start=3):
        if column not in df and source in df:  # tables saved before these columns existed
            df.insert(min(position, len(df.columns)), column, df[source])
    return df


def _literal(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{(":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _default_filler(segment: dict) -> str | None:
    """A key-value task's filler when its config leaves the default; None for tasks without filler."""
    return segment.get("filler", "random") if "num_kv_pairs" in segment else None


SLICE_INT_COLUMNS = ("input_seq_len", "num_kv_pairs", "num_passes", "num_overwrites", "num_examples")


def load_slices(sweep_dir: str | Path) -> pd.DataFrame:
    """Long format: one row per (finished run, test slice), ready for a plot of where recall breaks.

    Columns: run_id, name, model, d_model, lr, params, state_size; the slice's name and fields
    (task, input_seq_len, num_kv_pairs, num_passes, … as integers; tasks without a field get <NA>)
    and its filler; num_examples; acc_last, acc_best (and perplexity_last, perplexity_best for
    language-modelling slices); `evaluated`, true for a slice added after training by
    `python -m zoology.eval` (acc_last from the final weights, acc_best from the best-epoch ones);
    train_max_seq_len and train_max_kv_pairs (the largest L and N among the run's training
    segments) and beyond_train_len / beyond_train_kv, true where the slice is longer / has more
    pairs than any training segment (tasks without key-value pairs have no N: <NA>, None).
    """
    rows = []
    for r in readable_runs(sweep_dir):
        result, config = r.result(), r.config()
        train = config["data"]["train"]
        test = config["data"]["test"]
        max_len = max(seg["input_seq_len"] for seg in train)
        max_kv = max((seg["num_kv_pairs"] for seg in train if "num_kv_pairs" in seg), default=None)
        run = {
            "run_id": result["run_id"],
            "name": result["name"],
            "model": family_name(m["name"] for m in config["model"]["mixers"]),
            "d_model": config["model"]["d_model"],
            "lr": config["lr"],
            "params": result.get("params"),
            "state_size": result.get("state_size"),
        }
        slices = []
        for i, s in enumerate(result["slices"]):
            segment = test[i] if i < len(test) else {}
            row = {**s, "filler": s.get("filler", _default_filler(segment) if segment else None)}
            for which in ("last", "best"):
                row[f"acc_{which}"] = result[which]["slices"][s["slice"]]
                if s["slice"] in result[which].get("perplexity_slices", {}):
                    row[f"perplexity_{which}"] = result[which]["perplexity_slices"][s["slice"]]
            slices.append({**row, "evaluated": False})
        slices += [{**row, "evaluated": True} for row in evaluated_slices(r)]
        for s in slices:
            kv = s.get("num_kv_pairs")
            rows.append(
                {
                    **run,
                    **s,
                    "train_max_seq_len": max_len,
                    "train_max_kv_pairs": max_kv,
                    "beyond_train_len": s["input_seq_len"] > max_len,
                    "beyond_train_kv": kv is not None and max_kv is not None and kv > max_kv,
                }
            )
    table = nulls_as_nan(pd.DataFrame(rows))
    for column in SLICE_INT_COLUMNS:
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def evaluated_slices(run: RunDir) -> list[dict[str, Any]]:
    """The slices `python -m zoology.eval` recorded for a run, one dict per slice: its name and fields,
    num_examples, filler, acc_last / acc_best (from the final / best-epoch weights; None where those
    were not evaluated) and, for language-modelling slices, perplexity_last / perplexity_best."""
    by_slice: dict[str, dict[str, Any]] = {}
    for e in run.evaluations():
        which = "last" if e["weights"] == "final" else "best"
        row = by_slice.setdefault(
            e["slice"],
            {
                "slice": e["slice"],
                **e["fields"],
                "num_examples": e["num_examples"],
                "filler": e["fields"].get("filler", e["segment"].get("filler")),
                "acc_last": None,
                "acc_best": None,
            },
        )
        row[f"acc_{which}"] = e["acc"]
        if "perplexity" in e:
            row[f"perplexity_{which}"] = e["perplexity"]
    return list(by_slice.values())


def load_model(run_dir: str | Path, weights: Weights = "final", device: str | torch.device = "cpu") -> LanguageModel:
    """The trained model of a run directory, in eval mode on `device`: rebuilt from its config.json and
    loaded with its kept weights ('final': model.safetensors; 'best': model_best.safetensors). Weights
    that do not fit the config (other names or shapes) are refused, naming the file and tensors."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        raise FileNotFoundError(f"{run.path}: not a run directory (no config.json)")
    config = TrainConfig.model_validate(run.config())
    state, _ = run.weights(weights)
    with torch.random.fork_rng(devices=[]):
        model = LanguageModel(config.model, max_seq_len=config.data.max_seq_len)
    expected = model.state_dict()
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [
        f"{name} is {tuple(state[name].shape)} in the file but {tuple(t.shape)} in the model"
        for name, t in expected.items()
        if name in state and state[name].shape != t.shape
    ]
    if problems:
        m = config.model
        shown = "; ".join(problems[:6]) + (f"; … {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ValueError(
            f"{run.weights_path(weights)} does not match {run.config_path} (model: {m.family}, "
            f"vocab_size={m.vocab_size}, d_model={m.d_model}, n_layers={m.n_layers}): {shown}"
        )
    model.load_state_dict(state)
    return model.to(device).eval()
