"""One place each for device choice, seeds, content hashing and atomic writes."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
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


def copy_rate(device: torch.device) -> float:
    """Measured memory bandwidth of `device` in bytes/s: a device-to-device copy (256 MiB on CUDA,
    32 MiB elsewhere) counts its bytes read plus written; the median of 10 after one warm-up."""
    x = torch.empty(256 * 2**20 if device.type == "cuda" else 32 * 2**20, device=device, dtype=torch.uint8)
    y = torch.empty_like(x)
    seconds = sorted(timings(lambda: y.copy_(x), device, warmup=1, repeats=10))[5]
    return 2 * x.numel() / seconds


def content_hash(obj: Any, length: int = 12) -> str:
    """Stable hex digest of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of JSON-serialisable parts."""
    return int(content_hash(list(parts), length=16), 16) >> 1


TEMP_SUFFIX = ".tmp"
"""An atomic write goes to `.<name>.<random>.tmp` beside its target first (see `remove_temps`)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file `.<name>.<random>.tmp` in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temps(
    directory: str | os.PathLike, older_than_s: float = 0.0, names: tuple[str, ...] | None = None
) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in `directory` (`.<name>.*.tmp`):
    those last modified at least `older_than_s` seconds ago, and only for targets in `names` if given.
    Returns the paths removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    removed = []
    for path in directory.glob(f".*{TEMP_SUFFIX}"):
        if names is not None and not any(path.name.startswith(f".{name}.") for name in names):
            continue
        try:
            if now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed it, or another cleaner removed it, meanwhile
            continue
    return removed


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None, through dicts, lists and tuples (strict
    JSON has no NaN or Infinity: such a number is written as null)."""
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return float(obj) if math.isfinite(obj) else None
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON of `obj`: non-finite floats as null (`finite`), other objects as their str; any NaN
    or Infinity left would raise rather than be written."""
    return json.dumps(finite(obj), indent=indent, default=str, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as strict, indented JSON (`json_text`), written atomically."""
    atomic_write_bytes(path, (json_text(obj, indent=2) + "\n").encode())
