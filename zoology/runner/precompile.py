"""Warming the compile caches of a sweep's pending runs in processes of their own, while it trains.

A process compiles one graph at a time (zoology.training.capture.COMPILED_CALLS), so a sweep of
many model shapes trained by one process spends most of its first epochs compiling. The
`Precompiler` takes the first config of each compiled shape (zoology.runner.plan.compile_shape_key)
whose compile is on, but for the first run's shape (its trainer compiles that one at once), and
runs `python -m zoology.training.warmup` on each, up to `processes` at a time, in the order the
runs train, in the background; the processes inherit this environment, so they fill the same
on-disk caches (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) and the training process finds the
shapes it reaches compiled. A warm-up changes no result: it only writes those caches. One that
fails is reported in a line and ignored; `stop` kills those still running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from zoology.config import TrainConfig
from zoology.errors import warn
from zoology.runner.plan import by_compile_shape, compile_shape_key
from zoology.runner.sequential import with_device
from zoology.training.build import compiles, planned_steps
from zoology.utils import pick_device

POLL_S = 0.2
"""How often the background thread looks for finished warm-ups."""


def default_processes() -> int:
    """Warm-up processes when --precompile is not given (on a GPU host): half the CPUs, 1 to 8."""
    return min(8, max(1, (os.cpu_count() or 1) // 2))


def configs_to_warm(configs: list[TrainConfig], device: str | None) -> list[TrainConfig]:
    """The first config of each compiled shape whose compile is on, on `device` (None: each config's
    own), in the order given."""
    placed = (with_device(c, device) for c in configs)
    compiled = [c for c in placed if compiles(c, pick_device(c.device), planned_steps(c))]
    return [group[0] for group in by_compile_shape(compiled).values()]


class Precompiler:
    """Warm-ups of the compiled shapes of `configs` (pending runs, in training order) but the first's,
    `processes` at a time, each with `threads` torch
    threads (the training process's count: inductor keys CPU kernels by it); `env` is added to this
    process's environment for them. `start()` returns at once; `stop()` kills what still runs."""

    def __init__(
        self,
        configs: list[TrainConfig],
        processes: int,
        device: str | None = None,
        threads: int = 1,
        env: dict[str, str] | None = None,
        log: Callable[[str], None] = warn,
    ):
        first = compile_shape_key(configs[0]) if configs else None  # its trainer compiles it at once
        self.configs = [c for c in configs_to_warm(configs, device) if compile_shape_key(c) != first]
        self.processes = max(1, min(processes, len(self.configs) or 1))
        self.threads, self.env, self.log = threads, env or {}, log
        self.finished: list[dict] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="precompile", daemon=True)
        self._dir: Path | None = None

    def start(self) -> Precompiler:
        if self.configs:
            self._dir = Path(tempfile.mkdtemp(prefix="zoology-precompile-"))
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every warm-up has ended; whether they all have."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Launch no more warm-ups, kill the running ones and remove their files."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Precompiler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _launch(self, i: int, config: TrainConfig) -> subprocess.Popen:
        path = self._dir / f"{i}.json"
        path.write_text(json.dumps(config.model_dump(mode="json")))
        env = {**os.environ, **self.env}
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, (os.cpu_count() or 1) // self.processes)))
        command = [sys.executable, "-m", "zoology.training.warmup", str(path)]
        command += ["--threads", str(self.threads), "--parent", str(os.getpid())]
        with open(self._dir / f"{i}.out", "wb") as out, open(self._dir / f"{i}.err", "wb") as err:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)

    def _ended(self, i: int, config: TrainConfig, proc: subprocess.Popen) -> None:
        out, err = (self._dir / f"{i}{suffix}" for suffix in (".out", ".err"))
        if proc.returncode == 0:
            try:
                self.finished.append({"name": config.name, **json.loads(out.read_text().splitlines()[-1])})
                return
            except (OSError, ValueError, IndexError):
                pass
        lines = [line for line in err.read_text(errors="replace").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else "no output"
        self.failed.append(config.name)
        why = f"exit {proc.returncode}: {reason}"
        self.log(f"precompile of {config.name} failed ({why}); its run compiles as it trains")

    def _run(self) -> None:
        pending = list(enumerate(self.configs))
        running: list[tuple[int, TrainConfig, subprocess.Popen]] = []
        try:
            while (pending or running) and not self._stop.is_set():
                while pending and len(running) < self.processes:
                    i, config = pending.pop(0)
                    try:
                        running.append((i, config, self._launch(i, config)))
                    except OSError as e:
                        self.failed.append(config.name)
                        self.log(f"precompile of {config.name} did not start ({e}); its run compiles as it trains")
                for item in [r for r in running if r[2].poll() is not None]:
                    running.remove(item)
                    self._ended(*item)
                self._stop.wait(POLL_S)
        finally:
            for _, _, proc in running:
                proc.kill()
                proc.wait()


def precompile_for(
    configs: list[TrainConfig],
    processes: int | None,
    ray_options=None,
    device: str | None = None,
    log: Callable[[str], None] = warn,
    say: Callable[[str], None] = print,
) -> Precompiler | None:
    """Warm-ups of `configs` (pending runs, in training order) on the devices and with the torch threads
    their runs train with (this process's, or as zoology.runner.ray places its workers given
    `ray_options`), started in the background; None when `processes` is 0, when nothing compiles, or
    on a remote cluster. `processes` None: `default_processes()` on a GPU host, else 0."""
    import torch

    if processes is None:
        processes = default_processes() if torch.cuda.is_available() else 0
    if processes == 0 or not configs or (ray_options is not None and ray_options.address):
        return None
    env = {}
    if ray_options is None:
        threads = torch.get_num_threads()
    else:
        gpu = torch.cuda.is_available() and ray_options.device != "cpu"
        device = "cuda" if gpu else "cpu"
        threads = max(1, int(ray_options.cpus_per_run * (ray_options.runs_per_gpu if gpu else 1)))
        if gpu and ray_options.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in ray_options.gpus)
    precompiler = Precompiler(configs, processes, device, threads, env, log)
    if not precompiler.configs:
        return None
    shapes, n = len(precompiler.configs), precompiler.processes
    say(f"precompiling {shapes} model shape{'s' * (shapes != 1)} in {n} process{'es' * (n != 1)}")
    return precompiler.start()
