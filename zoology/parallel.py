"""Sweep runs as Ray tasks: `python -m zoology.launch SWEEP.py -p` (needs the `parallel` extra).

Each run is one task with max_retries=0. On a cluster with GPUs a task asks for 1/K of a GPU
(--runs-per-gpu K) and --cpus-per-run CPUs; Ray sets CUDA_VISIBLE_DEVICES for it and the run trains
on "cuda" (on nodes with several GPUs each run gets a fresh worker process, as a CUDA context
cannot follow a task to another GPU; elsewhere workers are reused). Without GPUs (or with
--device cpu) a task asks for --cpus-per-run CPUs and uses as many torch threads. The driver
submits only as many tasks as can run at once, locking each run just before its task is
submitted, so a second launcher on the same sweep takes the runs this one has not reached yet.

Results travel back to the driver, not through a file system: a task sends ("start"), one message
per epoch and one per checkpoint, and returns the result; the driver writes the run directory
(config.json when it submits, metrics.jsonl as epochs land, checkpoint.pt, result.json last,
atomically) and hands a run's checkpoint back to the task that resumes it. Workers on other machines
therefore need zoology and any user mixer module importable, but no shared file system.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import threading
from dataclasses import dataclass

from zoology.config import TrainConfig
from zoology.launch import Planned, Progress, claim_in_turn


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise SystemExit(
            "-p runs configs as Ray tasks and needs Ray: pip install 'zoology[parallel]' (or pip install ray)"
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
        if self.runs_per_gpu < 1:
            raise SystemExit(f"--runs-per-gpu={self.runs_per_gpu}: must be at least 1")
        if not self.cpus_per_run > 0:
            raise SystemExit(f"--cpus-per-run={self.cpus_per_run}: must be positive")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise SystemExit(f"--num-cpus={self.num_cpus}: must be at least 1")
        if self.device not in (None, "cpu"):
            raise SystemExit(f"--device={self.device} with -p: Ray assigns GPUs; use --gpus to pick them, or cpu")
        if self.address and (self.gpus is not None or self.num_cpus is not None):
            raise SystemExit("--gpus and --num-cpus shape a local Ray instance; a cluster (--address) has its own")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RayOptions:
        require_ray()
        gpus = None
        if args.gpus is not None:
            try:
                gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
            except ValueError:
                raise SystemExit(f"--gpus={args.gpus!r}: give device indices like 0,1") from None
            if not gpus:
                raise SystemExit("--gpus is empty: give device indices like 0,1 (or --device cpu)")
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
    """What each task asks Ray for, the device its run uses, and how many run at once."""

    num_cpus: float
    num_gpus: float
    device: str
    slots: int

    def describe(self, resources: dict) -> str:
        each = f"{self.num_cpus:g} CPU" + (f" + {self.num_gpus:.4g} GPU" if self.num_gpus else "")
        return (
            f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
            f"{self.slots} runs at a time on {self.device} ({each} each)"
        )


def placement(options: RayOptions, resources: dict) -> Placement:
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    by_cpu = math.floor(cpus / options.cpus_per_run + 1e-9)
    if gpus > 0 and options.device != "cpu":
        share = round(1.0 / options.runs_per_gpu, 4)
        slots = min(math.floor(gpus * options.runs_per_gpu + 1e-9), by_cpu)
        result = Placement(options.cpus_per_run, share, "cuda", slots)
    else:
        result = Placement(options.cpus_per_run, 0.0, "cpu", by_cpu)
    if result.slots < 1:
        raise SystemExit(f"a run needs {options.cpus_per_run:g} CPUs but the Ray cluster has {cpus:g}")
    return result


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


def train_task(config_json: dict, events, threads: int, resume: bytes | None = None) -> dict:
    """Runs on a Ray worker: train one config (from the checkpoint `resume`, if given), reporting its
    start, each epoch and each checkpoint to `events`."""
    import torch

    from zoology.train import train

    torch.set_num_threads(threads)
    config = TrainConfig.model_validate(config_json)
    events.put(("start", config.run_id, socket.gethostname()))
    try:
        return train(
            config,
            None,
            on_epoch=lambda record: events.put(("epoch", config.run_id, record)),
            resume=resume,
            on_checkpoint=lambda data: events.put(("checkpoint", config.run_id, data)),
        )
    finally:
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def reusable_workers(nodes: list[dict]) -> bool:
    """A worker process may train run after run unless its node has several GPUs: a CUDA context
    stays on the GPU it was created on, while Ray may give the next task on that worker another."""
    return all(node.get("Resources", {}).get("GPU", 0) <= 1 for node in nodes if node.get("Alive", True))


def failure(error: BaseException) -> tuple[str, str]:
    """(one-line reason, full text for error.txt) of a task's exception."""
    import ray

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
    reuse = where.num_gpus == 0 or reusable_workers(ray.nodes())
    remote_train = ray.remote(max_calls=0 if reuse else 1)(train_task)
    events = Queue(actor_options={"num_cpus": 0})
    threads = max(1, int(options.cpus_per_run))
    next_run = claim_in_turn(todo, rerun_before, progress)
    in_flight: dict = {}
    by_run_id: dict[str, Planned] = {}

    def handle(event: tuple) -> None:
        kind, run_id, payload = event
        p = by_run_id.get(run_id)
        if p is None:
            return
        if kind == "start":
            progress.started(p, payload)
        elif kind == "epoch":
            p.run.append_metrics({k: v for k, v in payload.items() if k != "max_epochs"})
            progress.epoch(p, payload)
        elif kind == "checkpoint":
            p.run.write_checkpoint(payload)

    try:
        while True:
            while len(in_flight) < where.slots and (taken := next_run()) is not None:
                p, lock = taken
                config = p.config.set({"device": where.device, "name": p.config.name})
                config_json = config.model_dump(mode="json", exclude={"logger"})
                resume = p.run.checkpoint()
                p.run.start(config_json)
                task = remote_train.options(
                    num_cpus=where.num_cpus, num_gpus=where.num_gpus, max_retries=0, name=f"zoology:{config.name}"
                )
                in_flight[task.remote(config_json, events, threads, resume)] = (p, lock)
                by_run_id[p.config.run_id] = p
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
            for event in events.get_nowait_batch(events.qsize()):
                handle(event)
            for ref in ready:
                p, lock = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:
                    reason, text = failure(e)
                    p.run.write_error(text)
                    progress.fail(p, reason)
                else:
                    p.run.write_result(result)
                    progress.finished(p, result)
                finally:
                    lock.release()
                    by_run_id.pop(p.config.run_id, None)
    finally:
        # Stop what is still running and shut Ray down without a second Ctrl-C cutting it short.
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            for ref, (_, lock) in in_flight.items():
                ray.cancel(ref, force=True)
                lock.release()
            if started_here:
                ray.shutdown()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
