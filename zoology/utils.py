"""One place each for device choice, seeds, content hashing and atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is the first CUDA device when one is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op off CUDA), so host clocks time what ran."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(fn: Callable[..., Any], device: torch.device, warmup: int, repeats: int, setup=None) -> list[float]:
    """Seconds of each of `repeats` calls fn(*setup()) after `warmup` untimed ones, the device synchronised
    before and after each (setup, if given, runs outside the clock)."""
    times = []
    for i in range(warmup + repeats):
        args = setup() if setup else ()
        sync(device)
        start = time.perf_counter()
        fn(*args)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def content_hash(obj: Any, length: int = 12) -> str:
    """Stable hex digest of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of JSON-serialisable parts."""
    return int(content_hash(list(parts), length=16), 16) >> 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())
