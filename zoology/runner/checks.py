"""Checks made once, up front, before any run is planned: where the runs go, and whether this
machine has the devices the runs ask for (each failure is a UserError naming the flag or field)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from zoology.config import DEVICE_CHOICES, DEVICE_PATTERN
from zoology.errors import UserError


def check_device_flag(device: str | None) -> None:
    """--device is one of the allowed values (None: not given)."""
    if device is not None and not DEVICE_PATTERN.fullmatch(device):
        raise UserError(f"--device {device!r}: use {DEVICE_CHOICES}")


def check_precompile_flag(processes: int | None) -> None:
    """--precompile is a number of processes from 0 (off) to this machine's CPUs (None: not given)."""
    most = os.cpu_count() or 1
    if processes is not None and not 0 <= processes <= most:
        raise UserError(
            f"--precompile {processes}: give the number of warm-up processes, from 0 (off) to {most} "
            "(this machine's CPUs)"
        )


def missing_device(device: str) -> str | None:
    """Why this machine cannot run on `device` ('cuda:1', 'mps', ...), or None when it can."""
    if device == "auto":
        return None
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            built = "" if torch.version.cuda else ", a build without CUDA"
            return f"this machine has no CUDA device (torch {torch.__version__}{built})"
        if index and int(index) >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
    if kind == "mps" and not torch.backends.mps.is_available():
        return "this machine has no MPS device"
    return None


def check_devices(devices: Iterable[tuple[str, str]], flag: str | None, fix: str) -> None:
    """Every (device, where it was asked for) pair is available here; `flag` is the --device that set
    them all (None: each config's own), `fix` how else to choose one."""
    for device, where in devices:
        reason = missing_device(device)
        if reason is None:
            continue
        if flag is not None:
            raise UserError(f"--device {flag}: {reason}; use --device cpu or auto")
        raise UserError(f"{where}: device={device!r}, but {reason}; {fix}")


def check_runs_dir(path: Path, create: bool = True) -> None:
    """--runs-dir (or the directory under it that a command writes) is, or can be made, a writable directory."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--runs-dir: {existing} is a file, not a directory")
    if not create:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--runs-dir: cannot create {path} ({e.strerror or e})") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"--runs-dir: {path} is not writable")
