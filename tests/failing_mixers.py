"""Mixers that fail on purpose, named by dotted path in launcher tests."""

import torch
from torch import nn


class Exploding(nn.Module):
    """Raises on its first forward pass."""

    def __init__(self, d_model: int, layer_idx: int = 0):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this mixer always fails")

    def state_size(self, seq_len: int) -> int:
        return 0
