"""A lock per run directory, so two launchers on the same sweep never train the same config twice.

The lock is `fcntl.flock` on <run>/.lock, taken without waiting. The kernel drops it when the
holding process exits, however it exits (an exception, os._exit, SIGKILL), so
a lock is never stale: a .lock file that nobody holds is simply taken over. While held, the file
names its holder (pid, host, start time) for messages; the holder removes it on release.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from zoology.runner.rundir import LOCK_NAME


class RunLock:
    """Exclusive lock on one run directory: `if lock.acquire(): … lock.release()`."""

    def __init__(self, run_path: str | Path):
        self.path = Path(run_path) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no live process holds it; False if one does."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as e:
                os.close(fd)
                raise OSError(f"cannot lock {self.path}: {e} (does this file system support flock?)") from e
            # The previous holder may have removed the file between our open and flock: then we hold
            # a lock on an orphaned inode and must try again on the file now at that path.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def holder(self) -> dict | None:
        """Who wrote the lock file (pid, host, since), or None; says nothing about whether it is still held."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def seems_held(self) -> bool:
        """A guess that does not touch the lock (for --dry-run): a lock file whose holder is a live
        process on this host, or any lock file written on another host."""
        h = self.holder()
        if h is None:
            return False
        if h["host"] != socket.gethostname():
            return True
        try:
            os.kill(h["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe_holder(self) -> str:
        h = self.holder()
        return f"pid {h['pid']} on {h['host']} since {h['since']}" if h else "another process"

    def __enter__(self) -> RunLock:
        if not self.acquire():
            raise RuntimeError(f"run {self.path.parent} is locked by {self.describe_holder()}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
