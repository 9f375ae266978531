"""A mixer in a user's own file, named by dotted path: it passes the kit and shows up in results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoology import launch, results
from zoology.mixers import conformance
from zoology.runner.plan import load_sweep

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "examples.my_mixer.CumulativeMean"

TINY_SWEEP = f'''
from zoology.config import TrainConfig

base = TrainConfig.from_yaml("attention").set({{
    "model.d_model": 16,
    "data.train": [{{"input_seq_len": 16, "num_kv_pairs": 2, "num_examples": 256, "vocab_size": 64}}],
    "data.test": [{{"input_seq_len": 16, "num_kv_pairs": 2, "num_examples": 64, "vocab_size": 64}}],
    "model.vocab_size": 64,
    "max_epochs": 1,
    "device": "cpu",
}})
configs = [
    base.set({{"model.mixers.1.name": mixer, "model.mixers.1.kwargs": {{}}}})
    for mixer in ("attention", "{EXAMPLE}")
]
'''


@pytest.fixture
def repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))


def test_example_mixer_passes_the_kit(repo_on_path):
    conformance.check_mixer(EXAMPLE)


def test_kit_runs_on_a_mixer_named_on_the_command_line():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "tests/test_mixer_conformance.py", "--mixer", EXAMPLE, "-k", "Cumul"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(conformance.CHECKS)} passed" in done.stdout


def test_naming_a_mixer_for_the_whole_suite_says_so_and_how_to_check_only_it():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    wide = [sys.executable, "-m", "pytest", "tests/test_config.py", "tests/test_mixer_conformance.py", "--collect-only"]
    done = subprocess.run(wide, cwd=REPO, env={**env, "ZOOLOGY_MIXERS": EXAMPLE}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (note,) = [line for line in done.stdout.splitlines() if line.startswith("note: ")]
    assert f"note: {EXAMPLE} joins the " in note and "run as usual (all of tests/: 5-15 minutes" in note
    suggested = note.split("For this mixer only: ", 1)[1].split()
    assert suggested[:3] == ["python", "-m", "pytest"]
    narrow = subprocess.run(
        [sys.executable, *suggested[1:], "--collect-only"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert narrow.returncode == 0, narrow.stdout + narrow.stderr
    assert "note: " not in narrow.stdout
    ids = [line for line in narrow.stdout.splitlines() if "::" in line]
    assert len(ids) >= len(conformance.CHECKS) + 1 and all("CumulativeMean" in i for i in ids), ids


def test_example_sweep_file_loads(repo_on_path):
    names = [c.model.mixers[1].name for c in load_sweep(REPO / "examples" / "my_mixer_sweep.py")]
    assert names == ["attention", EXAMPLE]


def test_example_mixer_in_a_sweep_shows_up_in_results(repo_on_path, tmp_path):
    sweep = tmp_path / "user_sweep.py"
    sweep.write_text(TINY_SWEEP)
    assert launch.main([str(sweep), "--runs-dir", str(tmp_path / "runs")]) == 0
    table = results.load(tmp_path / "runs" / "user_sweep").set_index("model")
    assert sorted(table.index) == ["base_conv+CumulativeMean", "base_conv+attention"]
    row = table.loc["base_conv+CumulativeMean"]
    assert row["config.model.mixers"][1]["name"] == EXAMPLE
    assert row["state_size"] == 16 * 2 + (16 + 1)
    assert table.loc["base_conv+attention", "state_size"] == 16 * 2 + 2 * 16 * 16
    assert 0.0 <= row["acc_last"] <= 1.0
