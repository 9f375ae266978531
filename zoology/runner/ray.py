"""Training a sweep's runs on Ray workers: `python -m zoology.launch SWEEP.py -p` (needs the `parallel` extra).

A worker is a Ray actor, one process. On a cluster with GPUs there is one worker per GPU (Ray sets
its CUDA_VISIBLE_DEVICES); it asks for K × --cpus-per-run CPUs and trains up to K runs at once
(--runs-per-gpu K), each in a thread of its own with a CUDA stream of its own, so that their kernels
run side by side: separate processes on one GPU only take turns. Without GPUs (or with --device cpu)
each worker asks for --cpus-per-run CPUs, uses as many torch threads and trains one run at a time.
A run that raises fails alone; a worker that dies fails the runs it was training and is replaced
(runs handed to it that had not begun go to another). The driver hands out only as many runs as
there are free places, locking each run just before, so a second launcher on the same sweep takes
the runs this one has not reached yet. With K > 1 the runs are handed out taking the model shapes in
turn (`plan.shapes_in_turn`: while one run compiles its shape, the others train), and a run goes to a
worker that has compiled its shape when one has a free place (a process compiles each shape once).

Results travel back to the driver, not through a file system: a run sends ("start"), one message
per epoch, one per checkpoint and one per set of weights, and returns the result; the driver writes
the run directory (config.json when it submits, metrics.jsonl as epochs land, checkpoint.pt, the
weights, result.json last, atomically) and hands a run's checkpoint back to the worker that resumes
it. Workers on other machines therefore need zoology and any user mixer module importable, but no
shared file system.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import socket
import threading
from dataclasses import dataclass

from zoology.config import TrainConfig
from zoology.errors import UserError
from zoology.runner.claims import claim_in_turn
from zoology.runner.plan import Planned, compile_shape_key, shapes_in_turn
from zoology.runner.progress import Progress

MAX_RUNS_PER_GPU = 32
"""A GPU worker gives each of its runs a CUDA stream of its own; PyTorch hands out 32 in turn."""


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise UserError(
            "-p runs configs on Ray workers and needs Ray: pip install 'zoology[parallel]' (or pip install ray)"
        ) from e


@dataclass
class RayOptions:
    runs_per_gpu: int = 1
    cpus_per_run: float = 1.0
    gpus: list[int] | None = None
    num_cpus: int | None = None
    address: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.runs_per_gpu <= MAX_RUNS_PER_GPU:
            raise UserError(f"--runs-per-gpu={self.runs_per_gpu}: must be between 1 and {MAX_RUNS_PER_GPU}")
        if not self.cpus_per_run > 0:
            raise UserError(f"--cpus-per-run={self.cpus_per_run}: must be positive")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UserError(f"--num-cpus={self.num_cpus}: must be at least 1")
        if self.device not in (None, "cpu"):
            raise UserError(f"--device={self.device} with -p: Ray assigns GPUs; use --gpus to pick them, or cpu")
        if self.address and (self.gpus is not None or self.num_cpus is not None):
            raise UserError("--gpus and --num-cpus shape a local Ray instance; a cluster (--address) has its own")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RayOptions:
        require_ray()
        gpus = None
        if args.gpus is not None:
            try:
                gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
            except ValueError:
                raise UserError(f"--gpus={args.gpus!r}: give device indices like 0,1") from None
            if not gpus:
                raise UserError("--gpus is empty: give device indices like 0,1 (or --device cpu)")
        return cls(
            runs_per_gpu=args.runs_per_gpu,
            cpus_per_run=args.cpus_per_run,
            gpus=gpus,
            num_cpus=args.num_cpus,
            address=args.address or os.environ.get("RAY_ADDRESS"),
            device=args.device,
        )


@dataclass
class Placement:
    """What each worker asks Ray for, the device its runs use, and how many workers train how many
    runs each at once."""

    num_cpus: float
    num_gpus: float
    device: str
    workers: int
    runs_per_worker: int

    @property
    def slots(self) -> int:
        return self.workers * self.runs_per_worker

    def describe(self, resources: dict) -> str:
        each = f"{self.num_cpus:g} CPU" + (f" + {self.num_gpus:g} GPU" if self.num_gpus else "")
        return (
            f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {self.slots} runs at a "
            f"time on {self.device}: {self.workers} worker(s) of {each}, {self.runs_per_worker} run(s) each"
        )


def placement(options: RayOptions, resources: dict) -> Placement:
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if gpus >= 1 and options.device != "cpu":
        per_worker = options.runs_per_gpu
        need = options.cpus_per_run * per_worker
        workers = min(math.floor(gpus + 1e-9), math.floor(cpus / need + 1e-9))
        if workers < 1:
            raise UserError(
                f"--runs-per-gpu={per_worker} at --cpus-per-run={options.cpus_per_run:g} needs {need:g} CPUs "
                f"per GPU but the Ray cluster has {cpus:g}"
            )
        return Placement(need, 1.0, "cuda", workers, per_worker)
    workers = math.floor(cpus / options.cpus_per_run + 1e-9)
    if workers < 1:
        raise UserError(f"a run needs {options.cpus_per_run:g} CPUs but the Ray cluster has {cpus:g}")
    return Placement(options.cpus_per_run, 0.0, "cpu", workers, 1)


def start_ray(options: RayOptions) -> dict:
    """Start a local Ray instance (or join the cluster at options.address); its total resources."""
    import ray

    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if options.address:
        ray.init(address=options.address, **quiet)
    else:
        import torch

        if options.gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in options.gpus)
        num_gpus = len(options.gpus) if options.gpus is not None else torch.cuda.device_count()
        ray.init(address="local", num_cpus=options.num_cpus, num_gpus=num_gpus, **quiet)
    return ray.cluster_resources()


class Worker:
    """A Ray actor that trains runs, up to `runs` at once (in Ray's threads), each on a CUDA stream
    of its own on a GPU worker: `train` takes a config, reports its start, each epoch and each
    checkpoint to `events`, and returns the result (resuming from the checkpoint `resume`, if given)."""

    def __init__(self, device: str, runs: int, threads: int):
        import queue

        import torch

        import zoology.training  # noqa: F401  (imported while the driver plans, not in the first run)

        torch.set_num_threads(threads)
        self.streams: queue.SimpleQueue | None = None
        if device == "cuda":
            streams = [torch.cuda.Stream() for _ in range(runs)]
            assert len({s.cuda_stream for s in streams}) == runs, "runs of a worker need distinct streams"
            self.streams = queue.SimpleQueue()
            for stream in streams:
                self.streams.put(stream)

    def train(self, config_json: dict, events, resume: bytes | None = None) -> dict:
        import torch

        from zoology.training import Callbacks, train

        config = TrainConfig.model_validate(config_json)
        events.put(("start", config.run_id, socket.gethostname()))
        stream = self.streams.get() if self.streams is not None else None
        try:
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                callbacks = Callbacks(
                    on_epoch=lambda record: events.put(("epoch", config.run_id, record)),
                    on_checkpoint=lambda data: events.put(("checkpoint", config.run_id, data)),
                    on_weights=lambda *weights: events.put(("weights", config.run_id, weights)),
                )
                return train(config, callbacks, resume=resume)
        finally:
            if stream is not None:
                self.streams.put(stream)


def worker_died(error: BaseException) -> bool:
    import ray

    return isinstance(error, (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError))


def failure(error: BaseException) -> tuple[str, str]:
    """(one-line reason, full text for error.txt) of a run's exception; for a run that diverged, its
    reason ('diverged at epoch N (loss nan)') for both."""
    import ray

    from zoology.training import Diverged

    if worker_died(error):
        reason = "its worker process died (a crash, a kill or out of host memory)"
        return reason, f"{reason}\n{type(error).__name__}: {error}\n"
    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, Diverged):
        return str(error.cause), f"{error.cause}\n"
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        cause = error.cause
        return f"{type(cause).__name__}: {cause}".splitlines()[0], str(error)
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}", f"{type(error).__name__}: {text}\n"


def run_parallel(
    todo: list[Planned],
    options: RayOptions,
    progress: Progress,
    rerun_before: float | None,
) -> None:
    """Train `todo` as Ray tasks, reporting to `progress`; uses the Ray instance already
    initialised in this process if there is one (and leaves it running), else starts one."""
    import ray
    from ray.util.queue import Queue

    started_here = not ray.is_initialized()
    resources = start_ray(options) if started_here else ray.cluster_resources()
    where = placement(options, resources)
    progress.bar.write(where.describe(resources))
    threads = max(1, int(where.num_cpus))
    worker_options = {"num_cpus": where.num_cpus, "num_gpus": where.num_gpus, "max_concurrency": where.runs_per_worker}
    remote = ray.remote(Worker).options(**worker_options)

    def new_worker():
        return remote.remote(where.device, where.runs_per_worker, threads)

    workers = [new_worker() for _ in range(where.workers)]
    load = [0] * len(workers)
    shapes: list[set[str]] = [set() for _ in workers]  # the model shapes each worker has compiled
    events = Queue(actor_options={"num_cpus": 0})
    if where.runs_per_worker > 1:
        todo = shapes_in_turn(todo)
    next_run = claim_in_turn(todo, rerun_before, progress.skipped)

    def pick_worker(key: str) -> int:
        """The least loaded worker with a free place, preferring one that has compiled this shape."""
        free = [w for w in range(len(workers)) if load[w] < where.runs_per_worker]
        return min(free, key=lambda w: (key not in shapes[w], load[w]))
    unstarted: list = []  # runs handed to a worker that died before they began
    handed_again: set[str] = set()  # each is handed to a second worker once, then fails
    in_flight: dict = {}
    by_run_id: dict[str, Planned] = {}
    started: set[str] = set()

    def handle(event: tuple) -> None:
        kind, run_id, payload = event
        p = by_run_id.get(run_id)
        if p is None:
            return
        if kind == "start":
            started.add(run_id)
            progress.started(p, payload)
        elif kind == "epoch":
            p.run.append_metrics(payload)
            progress.epoch(p, payload)
        elif kind == "checkpoint":
            p.run.write_checkpoint(payload)
        elif kind == "weights":
            p.run.write_weights(*payload)

    try:
        while True:
            while min(load) < where.runs_per_worker and (taken := unstarted.pop(0) if unstarted else next_run()):
                p, lock = taken
                key = compile_shape_key(p.config)
                w = pick_worker(key)
                shapes[w].add(key)
                config = p.config.set({"device": where.device, "name": p.config.name})
                config_json = config.model_dump(mode="json", exclude={"logger"})
                resume = p.run.checkpoint()
                p.run.start(config_json)
                in_flight[workers[w].train.remote(config_json, events, resume)] = (p, lock, w, workers[w])
                load[w] += 1
                by_run_id[p.config.run_id] = p
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
            for event in events.get_nowait_batch(events.qsize()):
                handle(event)
            for ref in ready:
                p, lock, w, worker = in_flight.pop(ref)
                load[w] -= 1
                run_id = p.config.run_id
                try:
                    result = ray.get(ref)
                except Exception as e:
                    if worker_died(e) and workers[w] is worker:
                        ray.kill(worker, no_restart=True)
                        workers[w] = new_worker()
                        shapes[w] = set()
                    if worker_died(e) and run_id not in started and run_id not in handed_again:
                        handed_again.add(run_id)
                        unstarted.append((p, lock))
                        continue
                    reason, text = failure(e)
                    p.run.write_error(text)
                    progress.fail(p, reason)
                else:
                    p.run.write_result(result)
                    progress.finished(p, result)
                lock.release()
                by_run_id.pop(run_id, None)
                started.discard(run_id)
    finally:
        # Stop what is still running and shut Ray down without a second Ctrl-C cutting it short.
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            for worker in workers:
                ray.kill(worker, no_restart=True)
            for _, lock, _, _ in in_flight.values():
                lock.release()
            for _, lock in unstarted:
                lock.release()
            if started_here:
                ray.shutdown()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
