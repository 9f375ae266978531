"""The run-directory format, written and read here and nowhere else.

<runs>/<sweep>/
    sweep.json       the sweep's run ids in the sweep file's order (written by the launcher)
<runs>/<sweep>/<run_id>/
    config.json      the TrainConfig, written when the run starts
    metrics.jsonl    one JSON line per epoch, appended as epochs end
    checkpoint.pt    the last end-of-epoch checkpoint of an unfinished run (removed with the result)
    model.safetensors       the final weights, written before the result
    model_best.safetensors  the best epoch's weights (with `keep_best_weights`), written as each new best lands
    result.json      written last, atomically: its presence means the run finished
    error.txt        the traceback of a run that raised (removed when it is rerun)
    throughput.json  prefill/decode speed by device and dtype (`python -m zoology.bench throughput`)
    evaluations.json test slices evaluated after training (`python -m zoology.eval`)
    explain/         token-weight heat maps, one PNG per example (`python -m zoology.explain`)
    .lock            held while a launcher trains the run (zoology.runner.locks)
    .<file>.<random>.tmp    an atomic write in progress (or one a kill cut short: see `remove_temps`)

Every JSON file is strict JSON: a NaN or infinite number is written as null. A run directory whose
files do not read (a truncated result.json, say, or a result.json without a config.json) is
*damaged* (`RunDir.damage`): it does not count as finished, so a launch trains it again, and the
loaders leave it out with a `DamagedRunWarning` naming the file and why.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import safetensors
import safetensors.torch
import torch

from zoology.utils import atomic_write_bytes, atomic_write_json, json_text, remove_temps

RESULT_FORMAT = 1
THROUGHPUT_FORMAT = 1
SWEEP_FORMAT = 1
EVALUATIONS_FORMAT = 1
WEIGHTS_FORMAT = "1"
LOCK_NAME = ".lock"
SWEEP_FILE = "sweep.json"
WEIGHTS_FILES = {"final": "model.safetensors", "best": "model_best.safetensors"}

TRAINING_FILES = ("config.json", "metrics.jsonl", "result.json")
"""The JSON files a launcher writes while it holds the run's lock; unreadable, the run is trained again."""
MEASURED_FILES = ("evaluations.json", "throughput.json")
"""The JSON files written after training (`zoology.eval`, `zoology.bench throughput`)."""
LAUNCHER_FILES = ("config.json", "result.json", "checkpoint.pt", *WEIGHTS_FILES.values())
"""The files written atomically only while the run's lock is held: their temporary files are stale
whenever the lock is free."""
MEASURED_TEMP_STALE_S = 600.0
"""A temporary file of evaluations.json or throughput.json (whose writers take no lock) is stale after this long."""

Weights = Literal["final", "best"]


class DamagedRunWarning(UserWarning):
    """A run directory left out because one of its files does not read."""


class DamagedFileError(ValueError):
    """A file of a run directory that is not readable JSON (truncated, say); the message names it."""


def read_json(path: Path) -> Any:
    """The JSON object in `path`; a DamagedFileError naming the file if it is not one."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedFileError(f"{path}: not readable JSON, truncated or damaged ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def read_json_lines(path: Path) -> list[dict]:
    """The JSON objects of `path`, one a line (blank lines skipped); a DamagedFileError naming the
    file and line if one is not."""
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise DamagedFileError(
                f"{path}: line {number} is not readable JSON, truncated or damaged ({type(e).__name__}: {e})"
            ) from None
        if not isinstance(record, dict):
            raise DamagedFileError(f"{path}: line {number} holds a JSON {type(record).__name__}, not an object")
        records.append(record)
    return records


class RunDir:
    """One run's directory: every file of the format, each written by one method."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    result_path = property(lambda self: self.path / "result.json")
    error_path = property(lambda self: self.path / "error.txt")
    throughput_path = property(lambda self: self.path / "throughput.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    evaluations_path = property(lambda self: self.path / "evaluations.json")
    explain_dir = property(lambda self: self.path / "explain")

    def is_finished(self) -> bool:
        """result.json is there, and it, config.json and metrics.jsonl read (see `damage`)."""
        return self.result_path.exists() and self.damage(TRAINING_FILES) is None

    def damage(self, names: tuple[str, ...] = TRAINING_FILES + MEASURED_FILES) -> str | None:
        """Why this directory cannot be read, naming the file: a result.json without a config.json, or
        one of the files `names` (those that exist) that is not readable JSON; None if nothing is wrong."""
        if self.result_path.exists() and not self.config_path.exists():
            return f"{self.result_path}: result.json but no config.json beside it"
        for name in names:
            path = self.path / name
            try:
                read_json_lines(path) if name.endswith(".jsonl") else read_json(path)
            except FileNotFoundError:
                continue
            except (DamagedFileError, OSError) as e:
                return str(e)
        return None

    def remove_temps(self) -> list[Path]:
        """Remove what interrupted atomic writes left here: every temporary file of a file written only
        under the run's lock (call it holding the lock), and those of the files written after training
        once MEASURED_TEMP_STALE_S old. Returns the paths removed."""
        return remove_temps(self.path, names=LAUNCHER_FILES) + remove_temps(
            self.path, MEASURED_TEMP_STALE_S, names=MEASURED_FILES
        )

    def weights_path(self, which: Weights = "final") -> Path:
        if which not in WEIGHTS_FILES:
            raise ValueError(f"weights={which!r}: use one of {sorted(WEIGHTS_FILES)}")
        return self.path / WEIGHTS_FILES[which]

    def start(self, config_json: dict) -> None:
        """Clear what an earlier attempt left, except its checkpoint (and the best weights that go with
        it), and record the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        stale = [self.result_path, self.error_path, self.metrics_path, self.evaluations_path]
        stale.append(self.weights_path("final"))
        if not self.checkpoint_path.exists():
            stale.append(self.weights_path("best"))
        for p in stale:
            p.unlink(missing_ok=True)
        atomic_write_json(self.config_path, config_json)

    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json_text(record) + "\n")
            f.flush()

    def write_result(self, result: dict) -> None:
        atomic_write_json(self.result_path, {"format": RESULT_FORMAT, **result})
        self.checkpoint_path.unlink(missing_ok=True)

    def write_checkpoint(self, data: bytes) -> None:
        atomic_write_bytes(self.checkpoint_path, data)

    def checkpoint(self) -> bytes | None:
        """The bytes of an unfinished attempt's last checkpoint, if it left one."""
        return self.checkpoint_path.read_bytes() if self.checkpoint_path.exists() else None

    def write_weights(self, which: Weights, epoch: int, state: dict[str, torch.Tensor]) -> Path:
        """The model's state dict as safetensors (`which`: 'final' or 'best'), the epoch it is from in
        the file's metadata; written to a temporary name and renamed."""
        metadata = {"format": WEIGHTS_FORMAT, "weights": which, "epoch": str(epoch)}
        tensors = {name: t.detach().cpu().contiguous() for name, t in state.items()}
        path = self.weights_path(which)
        atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))
        return path

    def weights(self, which: Weights = "final") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(state dict on the CPU, metadata) of the kept weights; a clear error when there are none."""
        path = self.weights_path(which)
        if not path.exists():
            hint = (
                "run with keep_best_weights: true to keep them"
                if which == "best"
                else "runs trained with the current version keep them when they finish: an older run has none, "
                "re-train it (a sweep's run: launch the sweep again with --force)"
            )
            raise FileNotFoundError(f"{path}: no {which} weights in this run directory; {hint}")
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {name: f.get_tensor(name) for name in f.keys()}
        except Exception as e:
            raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
        if metadata.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"{path}: weights format {metadata.get('format')!r}, expected {WEIGHTS_FORMAT!r}")
        return state, metadata

    def write_error(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.error_path.write_text(text)

    def write_throughput(self, entry: dict[str, Any]) -> Path:
        """Merge a throughput entry into throughput.json under its device and dtype; points measured
        again replace the old ones, others are kept."""
        data = self.throughput() or {"format": THROUGHPUT_FORMAT, "results": {}}
        slot = data["results"].setdefault(entry["device"], {})
        old = slot.get(entry["dtype"], {}).get("points", [])
        new_keys = {(p["batch_size"], p["context"]) for p in entry["points"]}
        kept = [p for p in old if (p["batch_size"], p["context"]) not in new_keys]
        points = sorted(kept + entry["points"], key=lambda p: (p["context"], p["batch_size"]))
        slot[entry["dtype"]] = {**entry, "points": points}
        atomic_write_json(self.throughput_path, data)
        return self.throughput_path

    def write_evaluations(self, entries: list[dict[str, Any]]) -> Path:
        """Merge evaluated slices into evaluations.json: an entry (slice, weights, acc, loss, …) replaces
        the one of the same slice and weights, others are kept."""
        new = {(e["slice"], e["weights"]) for e in entries}
        kept = [e for e in self.evaluations() if (e["slice"], e["weights"]) not in new]
        atomic_write_json(self.evaluations_path, {"format": EVALUATIONS_FORMAT, "slices": kept + entries})
        return self.evaluations_path

    def write_explain_figure(self, name: str, png: bytes) -> Path:
        """A PNG of `python -m zoology.explain` as explain/<name> (written to a temporary name and renamed);
        one of the same name is replaced."""
        if Path(name).name != name or not name.endswith(".png"):
            raise ValueError(f"{name!r}: an explain figure is a plain file name ending in .png")
        self.explain_dir.mkdir(parents=True, exist_ok=True)
        path = self.explain_dir / name
        atomic_write_bytes(path, png)
        return path

    def evaluations(self) -> list[dict[str, Any]]:
        """The entries of evaluations.json ([] if the run was never evaluated after training)."""
        if not self.evaluations_path.exists():
            return []
        data = read_json(self.evaluations_path)
        if data.get("format") != EVALUATIONS_FORMAT:
            raise ValueError(f"{self.evaluations_path}: format {data.get('format')!r}, expected {EVALUATIONS_FORMAT}")
        return data["slices"]

    def result(self) -> dict:
        data = read_json(self.result_path)
        if data.get("format") != RESULT_FORMAT:
            raise ValueError(
                f"{self.result_path}: result format {data.get('format')!r} is not the "
                f"supported format {RESULT_FORMAT}; rerun the sweep with --force"
            )
        return data

    def config(self) -> dict:
        return read_json(self.config_path)

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return read_json_lines(self.metrics_path)

    def throughput(self) -> dict | None:
        """throughput.json ({"format", "results": {device: {dtype: entry}}}), or None if never measured."""
        if not self.throughput_path.exists():
            return None
        data = read_json(self.throughput_path)
        if data.get("format") != THROUGHPUT_FORMAT:
            raise ValueError(f"{self.throughput_path}: format {data.get('format')!r}, expected {THROUGHPUT_FORMAT}")
        return data


def standalone_run(runs_dir: str | Path, family: str, run_id: str) -> RunDir:
    """Where a config trained or measured on its own (`zoology.train CONFIG`, `zoology.bench
    throughput CONFIG`) is recorded: RUNS_DIR/train-<model family>/<run id>, apart from every
    sweep's directory, and one directory per family whatever preset the config came from."""
    return RunDir(Path(runs_dir) / f"train-{family}" / run_id)


def sweep_order(sweep_dir: str | Path) -> list[str]:
    """The run ids of sweep.json, in the sweep file's order (empty if the launcher never wrote one)."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return []
    try:
        data = read_json(path)
    except DamagedFileError as e:
        warnings.warn(f"{e}; the runs are listed by name", DamagedRunWarning, stacklevel=3)
        return []
    return list(data["run_ids"]) if data.get("format") == SWEEP_FORMAT else []


def write_sweep_order(sweep_dir: str | Path, run_ids: list[str]) -> None:
    """Record the order of a sweep's runs: these ids first, then those an earlier launch listed."""
    ids = list(dict.fromkeys([*run_ids, *sweep_order(sweep_dir)]))
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(sweep_dir) / SWEEP_FILE, {"format": SWEEP_FORMAT, "run_ids": ids})


def run_dirs(sweep_dir: str | Path) -> list[RunDir]:
    """The run directories of a sweep directory (those with a config.json): in the sweep file's
    order (sweep.json), then any others by name."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {str(sweep_dir)!r}")
    rank = {run_id: i for i, run_id in enumerate(sweep_order(sweep_dir))}
    paths = sorted(
        (p for p in sweep_dir.iterdir() if (p / "config.json").exists()),
        key=lambda p: (rank.get(p.name, len(rank)), p.name),
    )
    return [RunDir(p) for p in paths]


def readable_runs(sweep_dir: str | Path, finished: bool = True, stacklevel: int = 3) -> list[RunDir]:
    """The run directories of a sweep (`run_dirs`, in its order) whose files all read: the finished
    ones, or (finished=False) every one. Each damaged directory is left out with a DamagedRunWarning
    naming the file and why (see `RunDir.damage`), as is a directory with a result.json but no
    config.json."""
    sweep_dir = Path(sweep_dir)
    runs = run_dirs(sweep_dir)
    orphans = sorted(
        p for p in sweep_dir.iterdir() if (p / "result.json").exists() and not (p / "config.json").exists()
    )
    readable = []
    for run in [*runs, *map(RunDir, orphans)]:
        if finished and not run.result_path.exists():
            continue
        why = run.damage()
        if why is not None:
            warnings.warn(f"{why}; the run is left out", DamagedRunWarning, stacklevel=stacklevel)
            continue
        readable.append(run)
    return readable
