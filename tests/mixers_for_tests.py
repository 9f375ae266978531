"""A user mixer for launcher tests, named by dotted path: tests.mixers_for_tests.Probe."""

from __future__ import annotations

import os
import signal
import threading
import time

import torch

from zoology.mixers.base_conv import BaseConv

FAULTS = ("none", "oom", "exit", "sigkill", "linger")


class Probe(BaseConv):
    """BaseConv that appends "<tag> <pid>" to `record_to` when a run builds it (layer 0), sleeps
    `sleep_s` to make the run last, and in its first forward acts out `fault`: "oom" raises
    torch.OutOfMemoryError, "exit" calls os._exit(3), "sigkill" kills its own process, "linger" starts a
    thread that never ends and is not a daemon (as a compiler's worker pool can leave one), so the
    process cannot end by returning from main, and writes "<record_to>.linger" once it has."""

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        kernel_size: int = 3,
        tag: str = "",
        record_to: str = "",
        sleep_s: float = 0.0,
        fault: str = "none",
    ):
        super().__init__(d_model, layer_idx, kernel_size)
        if fault not in FAULTS:
            raise ValueError(f"fault={fault!r}: use one of {FAULTS}")
        self.fault = fault
        self.record_to = record_to
        if record_to and layer_idx == 0:
            with open(record_to, "a") as f:
                f.write(f"{tag} {os.getpid()}\n")
        time.sleep(sleep_s)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        if self.fault == "exit":
            os._exit(3)
        if self.fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "linger" and not hasattr(self, "lingering"):
            self.lingering = threading.Thread(target=threading.Event().wait, daemon=False)
            self.lingering.start()
            with open(f"{self.record_to}.linger", "w") as f:
                f.write(str(os.getpid()))
        return super().forward(u)
