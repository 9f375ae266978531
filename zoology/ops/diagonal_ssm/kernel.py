"""The diagonal SSM in parallel form: its convolution kernel, and the state it leaves after a sequence."""

from __future__ import annotations

import torch


def _powers(log_decay: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Ā^e = exp(e·log Ā) for every exponent: (channels, n) and (seq,) -> (channels, n, seq), stable as Re log Ā < 0."""
    return torch.exp(log_decay[..., None] * exponents.to(log_decay.real.dtype))


def ssm_kernel(log_decay: torch.Tensor, C_B_bar: torch.Tensor, seq_len: int) -> torch.Tensor:
    """K_l = 2·Re(Σ_n (C B̄)_n Ā_n^l) for l < seq_len: log Ā, C·B̄ (channels, n) complex -> K (channels, seq_len) real."""
    powers = _powers(log_decay, torch.arange(seq_len, device=log_decay.device))
    return 2 * torch.einsum("cn,cnl->cl", C_B_bar, powers).real


def final_state(u: torch.Tensor, log_decay: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
    """x after the last of seq positions, Σ_j Ā^{seq−1−j} B̄ u_j: u (batch, channels, seq) real, log Ā, B̄ (channels,
    n) complex -> (batch, channels, n) complex. O(batch·channels·n·seq), no loop over positions."""
    seq = u.shape[-1]
    powers = _powers(log_decay, torch.arange(seq - 1, -1, -1, device=u.device))
    real = torch.einsum("bcl,cnl->bcn", u, powers.real)
    imag = torch.einsum("bcl,cnl->bcn", u, powers.imag)
    return B_bar * torch.complex(real, imag)
