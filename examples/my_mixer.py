"""An example of a mixer defined outside the zoology package.

Use it by dotted path, e.g. in a sweep: `"model.mixers.1.name": "examples.my_mixer.CumulativeMean"`
(run from the repository root, or put this file anywhere on your PYTHONPATH).
"""

from __future__ import annotations

import torch
from torch import nn


class CumulativeMean(nn.Module):
    """y_t = W_o (σ(W_g x_t) ⊙ m_t), m_t = (1/(t+1)) Σ_{j≤t} W_v x_j: a gated running mean.

    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State: the running sum (d_model) and
    the token count (1), d_model + 1 elements per sequence, in float32 (float64 for float64 inputs).
    """

    def __init__(self, d_model: int, layer_idx: int = 0, bias: bool = True):
        super().__init__()
        self.d_model, self.layer_idx = d_model, layer_idx
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.gate = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _output(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x))
        return self.out_proj(gate * mean.to(gate.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = self.value(x)
        acc = torch.promote_types(v.dtype, torch.float32)
        sums = v.to(acc).cumsum(dim=1)
        counts = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=acc)[:, None]
        count = torch.full((x.shape[0], 1), float(x.shape[1]), device=x.device, dtype=acc)
        state = {"sum": sums[:, -1].clone(), "count": count}
        return self._output(x, sums / counts), state

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        return {
            "sum": torch.zeros(batch_size, self.d_model, device=device, dtype=acc),
            "count": torch.zeros(batch_size, 1, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        total = state["sum"] + self.value(x_t)
        count = state["count"] + 1
        return self._output(x_t, total / count), {"sum": total, "count": count}

    def state_size(self, seq_len: int) -> int:
        return self.d_model + 1
