"""The compile warm-up in real processes: a warmed config trains with every compiled graph read from
the FX graph cache, the launcher's --precompile leaves results as they are, and a failing warm-up
is one line, not a failed sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_config
from sweep_helpers import ROOT, finish, kill_group, launch, write_sweep

from zoology.launch import main
from zoology.runner.precompile import Precompiler

SEGMENTS = [
    {"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 256},
    {"vocab_size": 64, "input_seq_len": 16, "num_kv_pairs": 2, "num_examples": 192},
]

TRAIN = """
import json, sys
from pathlib import Path
import torch
from torch._dynamo.utils import counters
from zoology.config import TrainConfig
from zoology.training import train
torch.set_num_threads(1)
config = TrainConfig.model_validate(json.loads(Path(sys.argv[1]).read_text())).set({"lr": 3e-3})
result = train(config)
print(json.dumps({"inductor": dict(counters["inductor"]), "graphs": counters["stats"]["unique_graphs"],
                  "compiled": result["compiled"]}))
"""


def compiled_config(updates: dict | None = None):
    """Two training segments of different lengths (two compiled graphs), compile on, one epoch on a CPU."""
    return tiny_config({"max_epochs": 1, "compile": True, "data.train": SEGMENTS, **(updates or {})})


def cache_env(tmp_path: Path, name: str) -> dict:
    """This environment with compile caches of its own under tmp_path/name."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    cache = tmp_path / name
    return {
        **os.environ,
        "PYTHONPATH": path,
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
    }


def run(args: list[str], env: dict) -> str:
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_warmed_config_trains_with_every_graph_from_the_cache(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(compiled_config().model_dump(mode="json")))
    train = ["-c", TRAIN, str(config_path)]

    warm = cache_env(tmp_path, "warm")
    warmed = json.loads(run(["-m", "zoology.training.warmup", str(config_path), "--threads", "1"], warm))
    assert warmed["shapes"] == 2
    after = json.loads(run(train, warm))
    # each dynamo graph is a forward and a backward FX graph, both read from the cache
    assert after["compiled"] and after["graphs"] == 2
    assert after["inductor"].get("fxgraph_cache_hit") == 2 * after["graphs"]
    assert after["inductor"].get("fxgraph_cache_miss", 0) == 0 and after["inductor"].get("fxgraph_cache_bypass", 0) == 0

    cold = json.loads(run(train, cache_env(tmp_path, "cold")))
    assert cold["graphs"] == 2 and cold["inductor"].get("fxgraph_cache_hit", 0) == 0
    assert cold["inductor"].get("fxgraph_cache_miss") == 2 * cold["graphs"]


def test_a_warm_up_that_fails_is_one_line_and_ignored(tmp_path, monkeypatch):
    for key, value in cache_env(tmp_path, "caches").items():
        monkeypatch.setenv(key, value)
    bad = compiled_config({"model.mixers.1.name": "failing_mixers.Exploding", "name": "exploding"})
    skipped = compiled_config({"compile": False, "model.d_model": 16})  # compile off: not warmed
    lines: list[str] = []
    first = compiled_config({"name": "first"})  # its shape is the trainer's to compile, at once
    configs = [first, skipped, bad, bad.set({"lr": 0.1, "name": "same-shape"}), first.set({"name": "first-again"})]
    precompiler = Precompiler(configs, 2, "cpu", log=lines.append)
    assert [c.name for c in precompiler.configs] == ["exploding"] and precompiler.processes == 1
    with precompiler:
        assert precompiler.wait(timeout=120)
    assert precompiler.failed == ["exploding"] and precompiler.finished == []
    assert len(lines) == 1 and "exploding" in lines[0] and "this mixer always fails" in lines[0]


def sweep_configs() -> list[dict]:
    """Three runs of two model shapes (two widths), compile on."""
    train = [{**SEGMENTS[0], "num_examples": 2000}]
    configs = [compiled_config({"lr": lr, "data.train": train}) for lr in (1e-2, 3e-3)]
    configs.append(compiled_config({"model.d_model": 16, "data.train": train}))
    return [c.model_dump(mode="json") for c in configs]


def proc_cmdlines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        try:
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def test_precompile_leaves_results_as_they_are_and_no_process_behind(tmp_path):
    sweep = write_sweep(tmp_path / "toy.py", sweep_configs())
    accuracies = {}
    for n in ("2", "0"):
        temp = tmp_path / f"tmp{n}"
        temp.mkdir()
        # one torch thread: a CPU run that follows another in its process then trains the same each time
        env = {**cache_env(tmp_path, f"caches{n}"), "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
        proc = launch(sweep, tmp_path / f"runs{n}", "--precompile", n, env=env)
        try:
            code, output = finish(proc)
        finally:
            kill_group(proc)
        assert code == 0, output[-3000:]
        assert ("precompiling 1 model shape in 1 process" in output) == (n == "2")  # the first is the trainer's
        assert "precompile of" not in output
        assert not [line for line in proc_cmdlines() if str(temp) in line]
        assert not list(temp.glob("zoology-precompile-*"))
        finished = [json.loads(p.read_text()) for p in (tmp_path / f"runs{n}" / "toy").glob("*/result.json")]
        accuracies[n] = {r["run_id"]: (r["last"]["acc"], r["last"]["loss"], r["compiled"]) for r in finished}
    assert len(accuracies["2"]) == 3 and accuracies["2"] == accuracies["0"]


def test_precompile_takes_a_number_of_processes_in_range(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "toy.py", sweep_configs()[:1])
    try:
        main([str(sweep), "--runs-dir", str(tmp_path / "runs"), "--precompile", "-1"])
    except ValueError as e:
        message = str(e)
    else:
        raise AssertionError("expected a UserError")
    assert message.startswith("--precompile -1:") and f"from 0 (off) to {os.cpu_count()}" in message
