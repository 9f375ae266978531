"""The run directory format and loading a sweep into a pandas DataFrame.

<runs>/<sweep>/<run_id>/
    config.json     the TrainConfig, written when the run starts
    metrics.jsonl   one JSON line per epoch
    result.json     written last, atomically: its presence means the run finished
    error.txt       the traceback of a run that raised (removed when it is rerun)
    throughput.json prefill/decode speed by device and dtype (`python -m zoology.bench throughput`)
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pandas as pd

from zoology.utils import atomic_write_bytes, atomic_write_json

RESULT_FORMAT = 1
THROUGHPUT_FORMAT = 1
THROUGHPUT_REFERENCE = {"batch_size": 64, "context": 1024}
"""The (batch size, prompt length) of the plain `prefill_tokens_per_s` / `decode_tokens_per_s` columns."""


class RunDir:
    """One run's directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    result_path = property(lambda self: self.path / "result.json")
    error_path = property(lambda self: self.path / "error.txt")
    throughput_path = property(lambda self: self.path / "throughput.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

    def is_finished(self) -> bool:
        return self.result_path.exists()

    def start(self, config_json: dict) -> None:
        """Clear what an earlier attempt left, except its checkpoint, and record the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        for p in (self.result_path, self.error_path, self.metrics_path):
            p.unlink(missing_ok=True)
        atomic_write_json(self.config_path, config_json)

    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def write_result(self, result: dict) -> None:
        atomic_write_json(self.result_path, {"format": RESULT_FORMAT, **result})
        self.checkpoint_path.unlink(missing_ok=True)

    def write_checkpoint(self, data: bytes) -> None:
        atomic_write_bytes(self.checkpoint_path, data)

    def checkpoint(self) -> bytes | None:
        """The bytes of an unfinished attempt's last checkpoint, if it left one."""
        return self.checkpoint_path.read_bytes() if self.checkpoint_path.exists() else None

    def write_error(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.error_path.write_text(text)

    def result(self) -> dict:
        data = json.loads(self.result_path.read_text())
        if data.get("format") != RESULT_FORMAT:
            raise ValueError(
                f"{self.result_path}: result format {data.get('format')!r} is not the "
                f"supported format {RESULT_FORMAT}; rerun the sweep with --force"
            )
        return data

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]


def run_dirs(sweep_dir: str | Path) -> list[RunDir]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {str(sweep_dir)!r}")
    return [RunDir(p) for p in sorted(sweep_dir.iterdir()) if (p / "config.json").exists()]


def result_row(result: dict, config: dict) -> dict[str, Any]:
    """Flatten one finished run into a results row."""
    row: dict[str, Any] = {
        "run_id": result["run_id"],
        "name": result["name"],
        "model": "+".join(m["name"].rpartition(".")[2] for m in config["model"]["mixers"]),
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
        "version",
    ):
        row[key] = result.get(key)
    for which in ("last", "best"):
        row[f"acc_{which}"] = result[which]["acc"]
        for name, acc in result[which]["slices"].items():
            row[f"acc_{which}.{name}"] = acc
    row["best_epoch"] = result["best"]["epoch"]
    return row


def throughput_columns(run: RunDir, device: str | None = None) -> dict[str, Any]:
    """The latest throughput entry of a run (on a device whose name contains `device`, if given):
    the device, the reference point's prefill/decode tokens/s, and every point as
    `decode_tokens_per_s.B{batch}.P{context}` (likewise prefill)."""
    if not run.throughput_path.exists():
        return {}
    data = json.loads(run.throughput_path.read_text())
    if data.get("format") != THROUGHPUT_FORMAT:
        raise ValueError(f"{run.throughput_path}: format {data.get('format')!r}, expected {THROUGHPUT_FORMAT}")
    entries = [
        e
        for name, by_dtype in data["results"].items()
        if device is None or device.lower() in name.lower()
        for e in by_dtype.values()
    ]
    if not entries:
        return {}
    entry = max(entries, key=lambda e: e["measured_at"])
    row: dict[str, Any] = {"throughput_device": entry["device"], "throughput_dtype": entry["dtype"]}
    ref = (THROUGHPUT_REFERENCE["batch_size"], THROUGHPUT_REFERENCE["context"])
    for p in entry["points"]:
        for kind in ("prefill", "decode"):
            value = p.get(f"{kind}_tokens_per_s")
            row[f"{kind}_tokens_per_s.B{p['batch_size']}.P{p['context']}"] = value
            if (p["batch_size"], p["context"]) == ref:
                row[f"{kind}_tokens_per_s"] = value
    return row


def load(sweep_dir: str | Path, throughput_device: str | None = None) -> pd.DataFrame:
    """One row per finished run of a sweep directory (runs without result.json are left out), with
    throughput columns where the run has a throughput.json (see `throughput_columns`); or the rows
    of a CSV saved from such a table (`load(d).to_csv(path, index=False)`), lists and dicts restored."""
    if Path(sweep_dir).suffix == ".csv":
        return read_table(sweep_dir)
    rows = [
        result_row(r.result(), r.config()) | throughput_columns(r, throughput_device)
        for r in run_dirs(sweep_dir)
        if r.is_finished()
    ]
    return pd.DataFrame(rows)


def read_table(path: str | Path) -> pd.DataFrame:
    """A results table from CSV, with the list and dict cells (configs, slices) parsed back."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no results table {str(path)!r}")
    df = pd.read_csv(path)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype(object).map(_literal)
    return df


def _literal(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{(":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


SLICE_INT_COLUMNS = ("input_seq_len", "num_kv_pairs", "num_passes", "num_overwrites", "num_examples")


def load_slices(sweep_dir: str | Path) -> pd.DataFrame:
    """Long format: one row per (finished run, test slice), ready for a plot of where recall breaks.

    Columns: run_id, name, model, d_model, lr, params, state_size; the slice's name and fields
    (task, input_seq_len, num_kv_pairs, num_passes, … as integers; tasks without a field get <NA>)
    and its filler; num_examples; acc_last, acc_best; train_max_seq_len and train_max_kv_pairs
    (the largest L and N among the run's training segments) and beyond_train_len /
    beyond_train_kv, true where the slice is longer / has more pairs than any training segment.
    """
    rows = []
    for r in run_dirs(sweep_dir):
        if not r.is_finished():
            continue
        result, config = r.result(), r.config()
        train = config["data"]["train"]
        test = config["data"]["test"]
        max_len = max(seg["input_seq_len"] for seg in train)
        max_kv = max(seg["num_kv_pairs"] for seg in train)
        for i, s in enumerate(result["slices"]):
            rows.append(
                {
                    "run_id": result["run_id"],
                    "name": result["name"],
                    "model": "+".join(m["name"].rpartition(".")[2] for m in config["model"]["mixers"]),
                    "d_model": config["model"]["d_model"],
                    "lr": config["lr"],
                    "params": result.get("params"),
                    "state_size": result.get("state_size"),
                    **s,
                    "filler": s.get("filler", test[i].get("filler", "random") if i < len(test) else None),
                    "acc_last": result["last"]["slices"][s["slice"]],
                    "acc_best": result["best"]["slices"][s["slice"]],
                    "train_max_seq_len": max_len,
                    "train_max_kv_pairs": max_kv,
                    "beyond_train_len": s["input_seq_len"] > max_len,
                    "beyond_train_kv": s["num_kv_pairs"] > max_kv,
                }
            )
    table = pd.DataFrame(rows)
    for column in SLICE_INT_COLUMNS:
        if column in table:
            table[column] = table[column].astype("Int64")
    return table
