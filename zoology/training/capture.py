"""CUDA-graph capture shared by training steps and evaluation, safe for runs trained in threads of
one process (runs sharing a GPU), and the locks those threads take.

Each run works on a stream of its own (`run_stream`). A capture (`capture`) runs while no other
thread does eager CUDA work (`CAPTURE_LOCK`), since anything else that touches the device during a
capture may invalidate it; replays take no lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch


class CaptureLock:
    """Runs that train in threads of one process (sharing a GPU) do eager CUDA work (building,
    compiling, warming up, evaluating) side by side, but capture a graph alone: anything else that
    touches the device during a capture may invalidate it. A capture waits for the eager work under
    way to end, and new eager work waits for a waiting capture. Graph replays take no part."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._eager = 0
        self._captures_waiting = 0
        self._capturing = False

    @contextlib.contextmanager
    def eager(self, device: torch.device):
        if device.type != "cuda":
            yield
            return
        with self._changed:
            self._changed.wait_for(lambda: not self._capturing and not self._captures_waiting)
            self._eager += 1
        try:
            yield
        finally:
            with self._changed:
                self._eager -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def capture(self):
        with self._changed:
            self._captures_waiting += 1
            self._changed.wait_for(lambda: not self._capturing and not self._eager)
            self._captures_waiting -= 1
            self._capturing = True
        try:
            yield
        finally:
            with self._changed:
                self._capturing = False
                self._changed.notify_all()


CAPTURE_LOCK = CaptureLock()
COMPILED_CALLS = threading.Lock()
"""Held while a thread calls a compiled loss outside a capture: while one thread compiles, dynamo
refuses a compiled call from any other ("FX to symbolically trace a dynamo-optimized function")."""
SEEDING = threading.Lock()
"""Held while a run seeds the global generator and draws its initial weights from it."""


def compiled_calls(compiled: bool):
    """COMPILED_CALLS around a call of a compiled function; nothing for an eager one."""
    return COMPILED_CALLS if compiled else contextlib.nullcontext()


def capture(fn: Callable[[], object], device: torch.device, pool=None) -> tuple[torch.cuda.CUDAGraph, object]:
    """fn() captured as a CUDA graph on the current stream (in `pool`, else a pool of its own) while no
    other thread of the process does eager CUDA work; (the graph, not yet replayed, and fn's result)."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.current_stream(device)
    with CAPTURE_LOCK.capture(), torch.cuda.graph(graph, pool, stream, capture_error_mode="thread_local"):
        result = fn()
    return graph, result


def run_stream(device: torch.device):
    """Where a run's CUDA work goes: the current stream, or a new one if that is the device's default
    (graphs cannot be captured there). Runs trained by threads of one process each bring their own."""
    if device.type != "cuda" or torch.cuda.current_stream(device) != torch.cuda.default_stream(device):
        return contextlib.nullcontext()
    return torch.cuda.stream(torch.cuda.Stream(device))
