"""`python -m zoology.bench sweep --subset stratified`: the subset it trains and the time it projects."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter

import pytest
from sweep_helpers import ROOT, kill_group

from zoology.bench._projection import MeasuredRun, SweepRun, project, select_subset
from zoology.runner.plan import compile_shape_key, load_sweep
from zoology.runner.rundir import RunDir


def test_projection_adds_cold_setup_epochs_and_warm_setups_per_shape():
    sweep = [
        *(SweepRun(f"a{i}", "A", "f1", max_epochs=10, can_stop_early=True) for i in (1, 2, 3)),
        *(SweepRun(f"b{i}", "B", "f2", max_epochs=8, can_stop_early=True) for i in (1, 2)),
        SweepRun("c1", "C", "f1", max_epochs=5, can_stop_early=True),
    ]
    measured = [
        # A: steady 3 s/epoch (median of 2 and 4), eval 1 s/epoch, cold 30 - 3 * 4 = 18
        MeasuredRun("shape", "A", "a-short", 30.0, (9.0, 2.0, 4.0), (1.5, 0.5, 1.5)),
        # the grid of A: 4 epochs (stopped early), 10 and 6; warm set-ups 2, 4 and 3
        MeasuredRun("grid", "A", "a1", 4 * 4.0 + 2, (3.0,) * 4, (1.0,) * 4),
        MeasuredRun("grid", "A", "a2", 10 * 4.0 + 4, (3.0,) * 10, (1.0,) * 10),
        MeasuredRun("grid", "A", "a3", 6 * 4.0 + 3, (3.0,) * 6, (1.0,) * 6),
        # B: steady 1 s/epoch, eval 0.5, cold 10 - 2 * 1.5 = 7; no grid, so the median warm set-up, 3
        MeasuredRun("shape", "B", "b-short", 10.0, (5.0, 1.0), (0.5, 0.5)),
    ]  # C: its shape run failed
    projection = project(sweep, measured, runs_at_once=4)

    a, b = projection.shapes
    assert (a.shape, a.cold_setup, a.train_per_epoch, a.eval_per_epoch) == ("A", 18.0, 3.0, 1.0)
    assert (a.warm_setup, a.warm_measured, a.epochs, a.epochs_measured) == (3.0, True, [4, 10, 6], 3)
    assert a.projected == 18 + (4 + 10 + 6) * 4 + 2 * 3  # 104
    assert (b.cold_setup, b.train_per_epoch, b.eval_per_epoch) == (7.0, 1.0, 0.5)
    assert (b.warm_setup, b.warm_measured, b.epochs, b.epochs_measured) == (3.0, False, [8, 8], 0)
    assert b.projected == 7 + (8 + 8) * 1.5 + 1 * 3  # 34
    assert projection.unmeasured == ["C"]
    assert projection.serial == 138.0 and projection.wall == 138.0 / 4
    assert projection.upper_bound_runs == 2  # B's runs, at max_epochs though they may stop early
    assert projection.families() == [
        {"family": "f1", "runs": 3, "shapes": 1, "cold_setup_s": 18.0, "s_per_epoch": 4.0, "projected_s": 104.0},
        {"family": "f2", "runs": 2, "shapes": 1, "cold_setup_s": 7.0, "s_per_epoch": 1.5, "projected_s": 34.0},
    ]


def test_a_shape_of_one_run_pays_no_warm_setup_even_without_a_measured_one():
    sweep = [SweepRun("x", "X", "f", max_epochs=3, can_stop_early=False)]
    measured = [MeasuredRun("shape", "X", "x-short", 5.0, (2.0, 1.0), (0.0, 0.0))]
    (x,) = project(sweep, measured, runs_at_once=1).shapes
    assert (x.cold_setup, x.projected) == (3.0, 3.0 + 3 * 1.0)


def test_based_figure2_subset_covers_every_shape_once_and_the_grid_of_two():
    configs = load_sweep(ROOT / "sweeps" / "based_figure2.py")
    keys = [compile_shape_key(c) for c in configs]
    subset = select_subset(configs, shape_epochs=2, grid_shapes=2, device_type="cuda")

    assert Counter(compile_shape_key(c) for c in subset.shape_runs) == Counter(dict.fromkeys(set(keys), 1))
    assert len(subset.shape_runs) == 30
    for short in subset.shape_runs:
        assert (short.max_epochs, short.early_stopping_threshold, short.compile) == (2, None, True)
    assert [subset.shape_names[k] for k in subset.grid_shapes] == ["based-d48-f8-lr0.001-s0", "mamba-d64-N8-lr0.001-s0"]
    grid = [c for c in configs if compile_shape_key(c) in subset.grid_shapes]
    assert [c.run_id for c in subset.grid_runs] == [c.run_id for c in grid]
    assert [c.name for c in subset.grid_runs] == [
        f"{model}-lr{lr:.3g}-s0" for model in ("based-d48-f8", "mamba-d64-N8") for lr in (1e-3, 3.16e-3, 1e-2, 3.16e-2)
    ]
    assert [compile_shape_key(c) for c in subset.shape_runs[:2]] == subset.grid_shapes  # trained first

    # Past one shape per family, each family's next narrowest; on a CPU, compile: auto does not compile.
    five = select_subset(configs, shape_epochs=2, grid_shapes=5, device_type="cpu")
    assert [five.shape_names[k] for k in five.grid_shapes] == [
        "based-d48-f8-lr0.001-s0",
        "mamba-d64-N8-lr0.001-s0",
        "sliding_window-d128-w8-lr0.001-s0",
        "attention-d64-h1-lr0.001-s0",
        "based-d48-f16-lr0.001-s0",
    ]
    assert {c.compile for c in five.shape_runs} == {False}

    # A shape run that would be the sweep's own run (the same run id) is refused.
    as_short = [c.set({"max_epochs": 2, "early_stopping_threshold": None}) for c in configs]
    with pytest.raises(
        ValueError, match="--shape-epochs=2: the shape run of a grid shape would be the sweep's own run"
    ):
        select_subset(as_short, shape_epochs=2, grid_shapes=1, device_type="cuda")
    assert len(select_subset(as_short, shape_epochs=3, grid_shapes=1, device_type="cuda").grid_runs) == 4


TINY_SWEEP = """
from zoology.config import TrainConfig

segment = {"input_seq_len": 16, "num_kv_pairs": 2, "vocab_size": 64}
base = TrainConfig.model_validate({
    "model": {"vocab_size": 64, "d_model": 16, "n_layers": 2, "mixers": ["base_conv", "attention"]},
    "data": {"train": [{**segment, "num_examples": 256}], "test": [{**segment, "num_examples": 64}],
             "batch_size": 32, "test_batch_size": 64},
    "max_epochs": 3,
    "early_stopping_threshold": 0.2,
    "device": "cpu",
})
configs = [
    base.set({"model.mixers": ["base_conv", mixer], "lr": lr, "name": f"tiny-{mixer}-lr{lr:g}"})
    for mixer in ("attention", "based")
    for lr in (1e-3, 3e-2)
]
"""


def test_stratified_subset_on_cpu_projects_from_its_run_directories(tmp_path):
    pytest.importorskip("ray")
    sweep, runs, report_path = tmp_path / "tiny.py", tmp_path / "runs", tmp_path / "projection.json"
    sweep.write_text(TINY_SWEEP)
    command = [sys.executable, "-m", "zoology.bench", "sweep", "--sweep", str(sweep), "--subset", "stratified"]
    command += ["--device", "cpu", "--num-cpus", "2", "--grid-shapes", "1", "--runs-dir", str(runs)]
    command += ["--json", str(report_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, out
    report = json.loads(report_path.read_text())
    configs = load_sweep(sweep)
    attention, based = configs[:2], configs[2:]

    expected_serial = 0.0
    for runs_of_shape, in_grid in ((attention, True), (based, False)):
        first = runs_of_shape[0]
        short = RunDir(runs / "shapes" / first.set({"max_epochs": 2, "early_stopping_threshold": None}).run_id)
        metrics = short.metrics()
        assert [m["epoch"] for m in metrics] == [0, 1]
        steady, evaluation = metrics[1]["epoch_time"], metrics[1]["eval_time"]  # the median of one epoch
        cold = short.result()["wall_time"] - 2 * (steady + evaluation)
        (shape,) = [s for s in report["shapes"] if s["shape"] == first.name]
        assert (shape["train_s_per_epoch"], shape["eval_s_per_epoch"]) == (steady, evaluation)
        assert shape["cold_setup_s"] == pytest.approx(cold, rel=1e-12)
        if in_grid:
            grid = [RunDir(runs / "grid" / c.run_id).result() for c in runs_of_shape]
            epochs = [r["epochs"] for r in grid]
            warm = statistics.median(r["wall_time"] - r["epochs"] * (steady + evaluation) for r in grid)
            assert (shape["epochs_measured"], shape["warm_setup_s"]) == (2, pytest.approx(warm, rel=1e-12))
        else:
            epochs = [3, 3]
            assert not (runs / "grid" / runs_of_shape[1].run_id).exists()
            assert (shape["epochs_measured"], shape["warm_setup_s"]) == (0, report["total"]["median_warm_setup_s"])
        assert shape["epochs"] == epochs
        projected = cold + sum(epochs) * (steady + evaluation) + shape["warm_setup_s"]
        assert shape["projected_s"] == pytest.approx(projected, rel=1e-12)
        expected_serial += projected

    total = report["total"]
    assert (total["runs"], total["shapes"], total["runs_at_max_epochs_that_may_stop_early"]) == (4, 2, 2)
    assert report["runs_at_once"] == 2
    assert total["serial_s"] == pytest.approx(expected_serial, rel=1e-12)
    assert total["wall_s"] == pytest.approx(expected_serial / 2, rel=1e-12)
    assert report["subset"]["serial_s"] == pytest.approx(
        sum(RunDir(p).result()["wall_time"] for part in ("shapes", "grid") for p in (runs / part).iterdir()), rel=1e-12
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("base_conv+", "total "))}
    for family in report["families"]:
        assert rows[family["family"]][1:] == [
            "2",
            "1",
            f"{family['cold_setup_s']:.1f}",
            f"{family['s_per_epoch']:.2f}",
            f"{family['projected_s']:.1f}",
        ]
    assert rows["total"][-1] == f"{total['serial_s']:.1f}"
    assert (
        f"projected: {total['serial_s'] / 60:.1f} min one run after another, {total['wall_s'] / 60:.1f} min wall "
        "at 2 at a time" in out
    )

    # Launched again on the same --runs-dir, the subset resumes: nothing is retrained, and the
    # projection is the one its run directories give.
    wall_times = {
        p.name: RunDir(p).result()["wall_time"] for part in ("shapes", "grid") for p in (runs / part).iterdir()
    }
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"4 of 4 subset runs finished before in {runs}; kept" in again.stdout
    resumed = json.loads(report_path.read_text())
    assert resumed["subset"]["kept_from_before"] == 4
    assert resumed["shapes"] == report["shapes"] and resumed["total"] == report["total"]
    assert {
        n: RunDir(runs / part / n).result()["wall_time"] for part in ("shapes", "grid") for n in os.listdir(runs / part)
    } == wall_times
