"""Mixers whose recurrent form is wrong on purpose, named by dotted path in throughput tests."""

import torch
from torch import nn


class PrefixMean(nn.Module):
    """y_t = mean_{j<=t} W x_j. State: the running sum (d) and the count (1) per sequence."""

    def __init__(self, d_model: int, layer_idx: int = 0):
        super().__init__()
        self.d_model = d_model
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor):
        v = self.proj(x).cumsum(1)
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[:, None]
        return v / count, {"sum": v[:, -1], "count": count[-1].expand(x.shape[0], 1).clone()}

    def init_state(self, batch_size: int, device=None, dtype=None):
        zeros = torch.zeros(batch_size, self.d_model + 1, device=device, dtype=dtype)
        return {"sum": zeros[:, :-1].clone(), "count": zeros[:, -1:].clone()}

    def step(self, x_t: torch.Tensor, state):
        total, count = state["sum"] + self.proj(x_t), state["count"] + 1
        return total / count, {"sum": total, "count": count}

    def state_size(self, seq_len: int) -> int:
        return self.d_model + 1


class ForgetfulStep(PrefixMean):
    """Its step ignores the prefix: y_t = W x_t, which the parallel form does not compute."""

    def step(self, x_t: torch.Tensor, state):
        return self.proj(x_t), state


class MisreportedState(PrefixMean):
    """Correct recurrence, but state_size claims a constant it does not carry."""

    def state_size(self, seq_len: int) -> int:
        return 1
