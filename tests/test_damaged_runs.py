"""Damaged run directories, diverging runs, strict JSON and stale temporary files: what the loaders,
the plots and the launcher (a real process) do with each."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest
from sweep_helpers import ROOT, finish, launch, run_dir, tiny_config, trainings, write_sweep

from zoology import analysis, results
from zoology.config import TrainConfig
from zoology.data import CACHE_TEMP_STALE_S, cache_path, load_segment
from zoology.data.mqar import MQARConfig
from zoology.runner.claims import remove_stale_temps
from zoology.runner.locks import RunLock
from zoology.runner.plan import plan
from zoology.runner.rundir import DamagedRunWarning

SWEEP = "pair"
RAY = ["-p", "--num-cpus", "2", "--cpus-per-run", "1"]


def strict_json(text: str):
    """Parse as a strict reader does: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep of two tiny runs, launched once and finished: (configs, sweep directory, record file)."""
    base = tmp_path_factory.mktemp("finished")
    record = base / "record.txt"
    configs = [tiny_config(tag, record, epochs=1) for tag in ("a", "b")]
    rc, out = finish(launch(write_sweep(base / f"{SWEEP}.py", configs), base / "runs"))
    assert rc == 0, out
    return configs, base / "runs" / SWEEP, record


@pytest.fixture
def sweep(finished, tmp_path):
    """A copy of the finished sweep to damage: (configs, sweep file, runs dir, sweep dir, record)."""
    configs, source, record = finished
    runs = tmp_path / "runs"
    shutil.copytree(source, runs / SWEEP)
    return configs, write_sweep(tmp_path / f"{SWEEP}.py", configs), runs, runs / SWEEP, record


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE = {
    "truncated result.json": lambda run: truncate(run.result_path),
    "truncated config.json": lambda run: truncate(run.config_path),
    "truncated metrics.jsonl": lambda run: truncate(run.metrics_path),
    "result.json without config.json": lambda run: run.config_path.unlink(),
    "evaluations.json not JSON": lambda run: run.evaluations_path.write_text("{not json"),
}
NAMED = {
    "truncated result.json": "result.json: not readable JSON",
    "truncated config.json": "config.json: not readable JSON",
    "truncated metrics.jsonl": "metrics.jsonl: line 1 is not readable JSON",
    "result.json without config.json": "result.json but no config.json",
    "evaluations.json not JSON": "evaluations.json: not readable JSON",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_loaders_leave_out_a_damaged_run_with_a_warning_naming_its_file(sweep, kind):
    configs, _, _, sweep_dir, _ = sweep
    damaged, whole = (run_dir(sweep_dir, c) for c in configs)
    DAMAGE[kind](damaged)

    for loader in (results.load, results.load_slices, analysis.load_curves):
        with pytest.warns(DamagedRunWarning) as caught:
            table = loader(sweep_dir)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1 and str(damaged.path) in messages[0] and NAMED[kind] in messages[0], messages
        assert set(table["run_id"]) == {whole.path.name}, loader.__name__

    assert damaged.damage() is not None and whole.damage() is None
    if kind != "evaluations.json not JSON":  # files written after training leave the run finished
        assert not damaged.is_finished()
        done = {p.run.path.name: p.done for p in plan([TrainConfig.model_validate(c) for c in configs], sweep_dir)}
        assert done == {damaged.path.name: False, whole.path.name: True}


def test_a_truncated_result_is_retrained_on_relaunch_and_plots_skip_it(sweep):
    configs, sweep_file, runs, sweep_dir, record = sweep
    damaged, whole = (run_dir(sweep_dir, c) for c in configs)
    truncate(damaged.result_path)
    kept = whole.result_path.read_bytes()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    plot = subprocess.run(
        [sys.executable, "-m", "zoology.plot", str(sweep_dir), "--plot", "slices", "-o", str(runs / "slices.png")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert plot.returncode == 0, plot.stderr
    assert f"{damaged.result_path}: not readable JSON" in plot.stderr
    assert (runs / "slices.png").stat().st_size > 0

    before = trainings(record)
    rc, out = finish(launch(sweep_file, runs))
    assert rc == 0, out
    assert f"warning: {damaged.result_path}: not readable JSON" in out
    assert "2 runs, 1 finished, 1 to run" in out
    assert "Traceback" not in out
    summary = out[out.index("sweep finished") :]
    table_rows = [line.split() for line in summary.splitlines() if line.startswith("probe-")]
    assert [(row[0], row[-1]) for row in table_rows] == [("probe-a", "done"), ("probe-b", "done")], summary
    assert trainings(record) - before == {"a": 1}
    assert damaged.is_finished() and strict_json(damaged.result_path.read_text())["epochs"] == 1
    assert whole.result_path.read_bytes() == kept
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)
        assert len(results.load(sweep_dir)) == 2


def test_a_relaunch_removes_stale_temporary_files_of_every_run_it_can_lock(sweep):
    configs, sweep_file, runs, sweep_dir, _ = sweep
    first, second = (run_dir(sweep_dir, c) for c in configs)
    old = time.time() - 3600
    stale = [first.path / ".config.json.k1x2.tmp", second.path / ".result.json.a9b8.tmp"]
    stale += [second.path / ".checkpoint.pt.zz.tmp", first.path / ".evaluations.json.old.tmp"]
    fresh = second.path / ".evaluations.json.now.tmp"  # zoology.eval may be writing it: kept a while
    for path in [*stale, fresh]:
        path.write_text("{")
    os.utime(stale[-1], (old, old))

    rc, out = finish(launch(sweep_file, runs))
    assert rc == 0 and "2 runs, 2 finished, 0 to run" in out, out
    assert [p for p in stale if p.exists()] == []
    assert fresh.exists()
    assert sorted(p.name for p in sweep_dir.glob("*/.*.tmp")) == [fresh.name]


def test_temporary_files_of_a_run_another_launcher_holds_are_left_alone(sweep):
    configs, _, _, sweep_dir, _ = sweep
    planned = plan([TrainConfig.model_validate(c) for c in configs], sweep_dir)
    free, held = (p.run for p in planned)
    temps = [free.path / ".result.json.1.tmp", held.path / ".result.json.2.tmp"]
    for path in temps:
        path.write_text("{")
    holder = RunLock(held.path)
    assert holder.acquire()
    try:
        assert remove_stale_temps(planned) == 1
    finally:
        holder.release()
    assert [p.exists() for p in temps] == [False, True]


def test_opening_the_cache_removes_its_stale_temporary_files(tmp_path):
    segment = MQARConfig(vocab_size=64, input_seq_len=16, num_kv_pairs=2, num_examples=8)
    target = cache_path(segment, 0, tmp_path)
    stale, fresh = tmp_path / f".{target.name}.dead.tmp", tmp_path / f".{target.name}.busy.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a segm")
    old = time.time() - CACHE_TEMP_STALE_S - 60
    os.utime(stale, (old, old))

    built = load_segment(segment, 0, tmp_path)
    assert not stale.exists()
    assert fresh.exists()  # a writer of a few seconds ago may still rename it
    assert target.exists() and len(load_segment(segment, 0, tmp_path).inputs) == len(built.inputs) == 8


def test_json_written_to_a_run_directory_holds_null_for_nan_and_infinity(sweep):
    configs, _, _, sweep_dir, _ = sweep
    run = run_dir(sweep_dir, configs[0])
    result = run.result()
    name = next(iter(result["last"]["slices"]))
    result["last"]["acc"] = float("nan")
    result["best"]["slices"][name] = float("inf")
    result["last"]["macro_acc"] = float("-inf")
    run.write_result(result)
    run.append_metrics({"epoch": 1, "train_loss": float("nan"), "valid_acc": 0.5, "slices": {name: float("inf")}})
    point = {"batch_size": 1, "context": 16, "prefill_tokens_per_s": float("nan"), "decode_tokens_per_s": 10.0}
    run.write_throughput({"device": "cpu", "dtype": "fp32", "measured_at": "now", "points": [point]})

    for path in (run.result_path, run.throughput_path):
        assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    written = strict_json(run.result_path.read_text())
    assert written["last"]["acc"] is None and written["best"]["slices"][name] is None
    assert [strict_json(line) for line in run.metrics_path.read_text().splitlines()][-1]["train_loss"] is None
    assert strict_json(run.throughput_path.read_text())["results"]["cpu"]["fp32"]["points"][0] == {
        **point,
        "prefill_tokens_per_s": None,
    }

    table = results.load(sweep_dir).set_index("run_id")
    row = table.loc[run.path.name]
    assert math.isnan(row["acc_last"]) and math.isnan(row[f"acc_best.{name}"]) and math.isnan(row["macro_acc_last"])
    assert math.isnan(row["prefill_tokens_per_s"]) and row["decode_tokens_per_s"] == 10.0
    assert pd.api.types.is_float_dtype(table["acc_last"]) and pd.api.types.is_float_dtype(table["macro_acc_last"])
    curves = analysis.load_curves(sweep_dir)
    assert pd.api.types.is_float_dtype(curves["train_loss"]) and curves["train_loss"].isna().sum() == 1


@pytest.mark.parametrize("mode", [pytest.param([], id="sequential"), pytest.param(RAY, id="ray")])
def test_a_run_whose_loss_is_nan_fails_as_diverged_and_writes_no_nan(tmp_path, mode):
    if mode:
        pytest.importorskip("ray")
    record = tmp_path / "record.txt"
    configs = [{**tiny_config("wild", record, epochs=3), "lr": 1000.0}, tiny_config("calm", record, epochs=1)]
    sweep = write_sweep(tmp_path / "lr.py", configs)
    rc, out = finish(launch(sweep, tmp_path / "runs", *mode))

    assert rc == 1, out
    wild, calm = (run_dir(tmp_path / "runs" / "lr", c) for c in configs)
    reason = "diverged at epoch 1 (loss nan)"
    assert wild.error_path.read_text() == reason + "\n"
    assert "FAILED  probe-wild" in out and reason in out[out.index("1 run(s) failed") :], out
    assert "Traceback" not in out
    assert not wild.result_path.exists() and not wild.is_finished()
    records = [strict_json(line) for line in wild.metrics_path.read_text().splitlines()]
    assert [(r["epoch"], r["status"], r["train_loss"]) for r in records] == [(0, "diverged", None)]
    assert calm.is_finished()
    for path in [p for p in (tmp_path / "runs" / "lr").rglob("*.json*") if p.is_file()]:
        text = path.read_text()
        for line in text.splitlines() if path.suffix == ".jsonl" else [text]:
            strict_json(line)
    assert list(results.load(tmp_path / "runs" / "lr")["run_id"]) == [calm.path.name]


def test_zoology_train_on_a_diverging_config_records_the_reason(tmp_path):
    config = tmp_path / "wild.yaml"
    config.write_text(json.dumps({**tiny_config("wild", tmp_path / "record.txt", epochs=2), "lr": 1000.0}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "zoology.train", str(config), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "diverged at epoch 1 (loss nan)" in proc.stderr
    (error,) = (tmp_path / "runs").glob("train-*/*/error.txt")
    assert error.read_text() == "diverged at epoch 1 (loss nan)\n"
    assert not (error.parent / "result.json").exists()
