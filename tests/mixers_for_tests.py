"""A user mixer for launcher tests, named by dotted path: tests.mixers_for_tests.Probe."""

from __future__ import annotations

import os
import signal
import time

import torch

from zoology.mixers.base_conv import BaseConv

FAULTS = ("none", "oom", "exit", "sigkill")


class Probe(BaseConv):
    """BaseConv that appends "<tag> <pid>" to `record_to` when a run builds it (layer 0), sleeps
    `sleep_s` to make the run last, and in its first forward acts out `fault`: "oom" raises
    torch.OutOfMemoryError, "exit" calls os._exit(3), "sigkill" kills its own process."""

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
        return super().forward(u)
