"""The diagonal SSM as its recurrence: one position (`ssm_step`) and the loop over a sequence (the reference)."""

from __future__ import annotations

import torch


def ssm_step(
    x: torch.Tensor, u_t: torch.Tensor, decay: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = Ā ⊙ x_{t−1} + B̄ u_t, y_t = 2·Re(Σ_n C_n x_t): x (batch, channels, n) complex, u_t (batch, channels)
    real, decay Ā, B̄, C (channels, n) complex -> (y_t (batch, channels) real, x_t)."""
    x = decay * x + B_bar * u_t[..., None]
    return 2 * (C * x).real.sum(-1), x


def reference_ssm(
    u: torch.Tensor, log_decay: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence from x_{−1} = 0, one position at a time: u (batch, channels, seq) -> (y (batch, channels,
    seq), x after the last position (batch, channels, n))."""
    decay = torch.exp(log_decay)
    x = torch.zeros(*u.shape[:2], log_decay.shape[-1], dtype=decay.dtype, device=u.device)
    ys = []
    for t in range(u.shape[-1]):
        y_t, x = ssm_step(x, u[..., t], decay, B_bar, C)
        ys.append(y_t)
    return torch.stack(ys, dim=-1), x
