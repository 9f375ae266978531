"""Runs sharing a GPU (`-p --runs-per-gpu K`) train in threads of one worker, each on its own CUDA
stream: they must learn exactly what they learn alone. CUDA only (on a CPU host Ray gives each run a
process of its own)."""

from __future__ import annotations

import json

import pytest
import torch
from sweep_helpers import finish, kill_group, launch, run_dir, write_sweep

from zoology.config import TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="runs share a GPU only on CUDA")


def configs() -> list[dict]:
    small = {"data.train.0.num_examples": 2000, "data.test.0.num_examples": 256, "max_epochs": 3}
    small |= {"early_stopping_threshold": None, "checkpoint_every": None}
    variants = [(preset, {}) for preset in ("attention", "based", "mamba", "sliding_window", "rebased")]
    variants.append(("attention", {"compile": True, "name": "packed-compiled"}))
    variants.append(("based", {"compile": True, "name": "packed-compiled-based"}))  # compiles beside the first
    return [
        TrainConfig.from_yaml(preset).set({**small, "name": f"packed-{preset}", **extra}).model_dump(mode="json")
        for preset, extra in variants
    ]


def epochs(run) -> list[dict]:
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines()]


def test_runs_packed_on_one_gpu_learn_what_they_learn_alone(tmp_path):
    pytest.importorskip("ray")
    sweep = write_sweep(tmp_path / "packed.py", configs())
    alone = launch(sweep, tmp_path / "alone")
    rc, out = finish(alone, timeout=600)
    kill_group(alone)
    assert rc == 0, out
    packed = launch(sweep, tmp_path / "packed", "-p", "--runs-per-gpu", "4", "--num-cpus", "4")
    rc, out = finish(packed, timeout=600)
    kill_group(packed)
    assert rc == 0, out
    assert "4 runs at a time on cuda: 1 worker(s)" in out
    for config in configs():
        by_alone = epochs(run_dir(tmp_path / "alone" / "packed", config))
        by_packed = epochs(run_dir(tmp_path / "packed" / "packed", config))
        assert len(by_alone) == len(by_packed) == 3
        for a, p in zip(by_alone, by_packed):
            assert p["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4), (config["name"], a, p)
            assert p["valid_acc"] == pytest.approx(a["valid_acc"], abs=0.01), (config["name"], a, p)
