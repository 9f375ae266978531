"""Tiny sweeps of the test Probe mixer, launching `python -m zoology.launch` as a real process, and a
real local Ray cluster that several launchers join."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from zoology.runner.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(tag: str, record_to: Path, sleep_s: float = 0.0, fault: str = "none", epochs: int = 2) -> dict:
    """A run of a few seconds on one CPU: d_model 16, 128 training examples of 16 tokens."""
    segment = {"input_seq_len": 16, "num_kv_pairs": 2, "vocab_size": 64}
    probe = {"tag": tag, "record_to": str(record_to), "sleep_s": sleep_s, "fault": fault}
    return {
        "name": f"probe-{tag}",
        "model": {
            "vocab_size": 64,
            "d_model": 16,
            "n_layers": 2,
            "mixers": [{"name": "tests.mixers_for_tests.Probe", "kwargs": probe}, "attention"],
        },
        "data": {
            "train": [{**segment, "num_examples": 128}],
            "test": [{**segment, "num_examples": 32}],
            "batch_size": 32,
            "test_batch_size": 32,
        },
        "max_epochs": epochs,
        "early_stopping_threshold": None,
        "device": "cpu",
    }


def write_sweep(path: Path, configs: list[dict]) -> Path:
    path.write_text(
        "import json\n"
        "from zoology.config import TrainConfig\n"
        f"configs = [TrainConfig.model_validate(c) for c in json.loads({json.dumps(json.dumps(configs))})]\n"
    )
    return path


def launch(sweep: Path, runs_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The launcher as its own process group (so a test can clean up what a killed launcher leaves)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "zoology.launch", str(sweep), "--runs-dir", str(runs_dir), *args],
        cwd=sweep.parent,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a launcher's process group (Ray helpers of a killed launcher)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(condition, timeout: float = 240, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def trainings(record: Path) -> Counter:
    """How many times each tag's run was built (started training)."""
    if not record.exists():
        return Counter()
    return Counter(line.split()[0] for line in record.read_text().splitlines() if line.strip())


def run_dir(sweep_dir: Path, config: dict) -> RunDir:
    from zoology.config import TrainConfig

    return RunDir(sweep_dir / TrainConfig.model_validate(config).run_id)


def check_complete(run: RunDir, epochs: int) -> dict:
    """A finished run directory is whole: parseable result, one metrics line per epoch, in order."""
    result = run.result()
    assert result["epochs"] == epochs
    assert [m["epoch"] for m in run.metrics()] == list(range(epochs))
    assert run.config()["name"] == result["name"]
    assert not run.error_path.exists()
    assert not (run.path / ".lock").exists()
    return result


@contextlib.contextmanager
def ray_cluster(log: Path, num_cpus: int = 2) -> Iterator[str]:
    """A Ray head node of `num_cpus` CPUs on this host (`ray start --head --block`, as its own process
    group, its workers able to import tests.*): yields its address, for launchers to join with
    --address; stopped afterwards, every process of it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    flags = [f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0"]
    flags += ["--include-dashboard=false", "--disable-usage-stats"]
    with open(log, "w") as out:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", *flags],
            env={**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: head.poll() is not None or "Ray runtime started" in log.read_text(), what="a Ray head node")
        assert head.poll() is None, log.read_text()
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        kill_group(head)
