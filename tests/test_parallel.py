"""The launcher's plan (--filter, --dry-run with time estimates), Ray placement, and -p end to end."""

from __future__ import annotations

import os

import pytest
import torch
from sweep_helpers import check_complete, finish, kill_group, launch, run_dir, tiny_config, trainings, write_sweep

from zoology.config import TrainConfig
from zoology.errors import UserError
from zoology.results import load_model
from zoology.runner.locks import RunLock
from zoology.runner.ray import RayOptions, placement
from zoology.training.evaluation import evaluate
from zoology.training.loop import load_segments


def test_ray_sweep_trains_in_worker_processes_and_prints_each_accuracy(tmp_path):
    pytest.importorskip("ray")
    record = tmp_path / "record.txt"
    configs = [tiny_config(t, record, epochs=2) for t in "abc"]
    sweep = write_sweep(tmp_path / "par.py", configs)
    proc = launch(sweep, tmp_path / "runs", "-p", "--num-cpus", "2", "--cpus-per-run", "1")
    try:
        rc, out = finish(proc)
    finally:
        kill_group(proc)
    assert rc == 0, out
    assert "2 runs at a time on cpu: 2 worker(s) of 1 CPU, 1 run(s) each" in out
    for config in configs:
        result = check_complete(run_dir(tmp_path / "runs" / "par", config), epochs=2)
        assert f"done    {config['name']:<40} acc {result['last']['acc']:.4f}" in out
    worker_pids = {line.split()[1] for line in record.read_text().splitlines()}
    assert str(proc.pid) not in worker_pids
    assert trainings(record) == {"a": 1, "b": 1, "c": 1}
    table = [line.split() for line in out.splitlines() if line.strip().startswith("probe-")]
    assert sorted(row[0] for row in table if row[-1] == "done") == ["probe-a", "probe-b", "probe-c"]
    for config in configs:  # the weights travelled back to the driver, which wrote them
        run = run_dir(tmp_path / "runs" / "par", config)
        train_config = TrainConfig.model_validate(config)
        segments = load_segments(train_config, "test", torch.device("cpu"))
        evaluated = evaluate(load_model(run.path), segments, train_config.data.test_batch_size)
        assert evaluated["acc"] == pytest.approx(run.result()["last"]["acc"], abs=1e-9)


def test_filter_runs_only_matching_names_and_dry_run_estimates_the_rest(tmp_path):
    record = tmp_path / "record.txt"
    configs = [tiny_config(t, record, epochs=1) for t in ("small-1", "small-2", "large-1")]
    sweep = write_sweep(tmp_path / "plan.py", configs)
    runs = tmp_path / "runs"
    sweep_dir = runs / "plan"

    rc, out = finish(launch(sweep, runs, "--filter", "1$"))
    assert rc == 0, out
    assert "sweep" in out and "2 runs, 0 finished, 2 to run" in out
    assert trainings(record) == {"small-1": 1, "large-1": 1}
    assert not run_dir(sweep_dir, configs[1]).path.exists()

    rc, out = finish(launch(sweep, runs, "--filter", "nothing-matches"))
    assert rc == 2 and "--filter 'nothing-matches' matches none of the sweep's 3 run names" in out, out
    assert "probe-small-1, probe-small-2, probe-large-1" in out and "frontier plot" not in out

    held = RunLock(run_dir(sweep_dir, configs[1]).path)
    assert held.acquire()
    try:
        rc, out = finish(launch(sweep, runs, "--dry-run"))
    finally:
        held.release()
    assert rc == 0, out
    assert "3 runs, 2 finished, 1 to run" in out
    lines = {line.split()[2]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["probe-small-1"].split()[0] == "done" and "acc" in lines["probe-small-1"]
    assert lines["probe-small-2"].split()[0] == "running" and f"pid {os.getpid()}" in lines["probe-small-2"]
    assert "estimated training time" in out and "total:" in out
    assert trainings(record) == {"small-1": 1, "large-1": 1}

    rc, out = finish(launch(sweep, runs, "--dry-run", "--filter", "small-2"))
    mean = sum(run_dir(sweep_dir, c).result()["wall_time"] for c in (configs[0], configs[2])) / 2
    assert rc == 0 and f"~{mean:.0f}s (mean of 2 finished, same family and width)" in out, out

    # Another sweep directory: runs finished in runs/plan estimate themselves; a family with no
    # finished run anywhere gets no estimate rather than another family's mean.
    other = tiny_config("other-family", record, epochs=1)
    other["model"]["mixers"][1] = "base_conv"
    write_sweep(tmp_path / "plan.py", [*configs, other])
    rc, out = finish(launch(sweep, runs, "--dry-run", "--name", "again"))
    assert rc == 0, out
    lines = {line.split()[2]: line for line in out.splitlines() if line.startswith("  todo")}
    took = run_dir(sweep_dir, configs[0]).result()["wall_time"]
    assert f"~{took:.0f}s (the same run finished in {sweep_dir})" in lines["probe-small-1"]
    assert lines["probe-other-family"].rstrip().endswith("no estimate")
    assert "Probe+base_conv" in out and "unknown (no finished run of this family yet)" in out


def test_parallel_without_ray_says_how_to_install_it(tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    sweep = write_sweep(tmp_path / "s.py", [tiny_config("a", tmp_path / "r.txt")])
    path = os.pathsep.join([str(tmp_path / "no_ray"), os.environ.get("PYTHONPATH", "")])
    rc, out = finish(launch(sweep, tmp_path / "runs", "-p", env={"PYTHONPATH": path}))
    assert rc != 0
    assert "pip install 'zoology[parallel]'" in out
    assert not (tmp_path / "runs").exists()


def test_placement_gives_each_gpu_one_worker_training_k_runs_at_once():
    gpu_host = {"CPU": 16.0, "GPU": 2.0}
    p = placement(RayOptions(runs_per_gpu=4), gpu_host)
    assert (p.num_gpus, p.num_cpus, p.device, p.workers, p.runs_per_worker, p.slots) == (1, 4, "cuda", 2, 4, 8)
    p = placement(RayOptions(runs_per_gpu=3, cpus_per_run=4), gpu_host)
    assert (p.num_cpus, p.workers, p.slots) == (12, 1, 3)  # CPUs bound it: 16 / 12
    p = placement(RayOptions(runs_per_gpu=2, device="cpu"), gpu_host)
    assert (p.num_gpus, p.device, p.workers, p.runs_per_worker) == (0.0, "cpu", 16, 1)
    p = placement(RayOptions(cpus_per_run=2), {"CPU": 5.0})
    assert (p.num_gpus, p.device, p.slots) == (0.0, "cpu", 2)
    with pytest.raises(UserError, match="needs 8 CPUs"):
        placement(RayOptions(cpus_per_run=8), {"CPU": 2.0})
    with pytest.raises(UserError, match="--runs-per-gpu=8 at --cpus-per-run=1 needs 8 CPUs per GPU"):
        placement(RayOptions(runs_per_gpu=8), {"CPU": 4.0, "GPU": 1.0})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"runs_per_gpu": 0}, "--runs-per-gpu"),
        ({"runs_per_gpu": 33}, "--runs-per-gpu=33: must be between 1 and 32"),
        ({"cpus_per_run": 0}, "--cpus-per-run"),
        ({"device": "cuda:1"}, "--gpus"),
        ({"address": "auto", "gpus": [0]}, "local Ray instance"),
    ],
)
def test_bad_ray_options_are_refused_with_the_flag_named(options, message):
    with pytest.raises(UserError, match=message):
        RayOptions(**options)
