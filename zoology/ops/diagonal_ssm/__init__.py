"""A diagonal (complex, S4D-style) state-space model per channel, the long-memory half of H3:

    x_t = Ā ⊙ x_{t−1} + B̄ u_t (x_{−1} = 0),   y_t = 2·Re(Σ_n C_n x_{t,n}),   Ā = exp(log Ā)

that is, y = K ∗ u with the materialised kernel K_l = 2·Re(Σ_n C_n B̄_n Ā_n^l). Shapes: u (batch, channels,
seq) real; log Ā, B̄, C (channels, n) complex; states x (batch, channels, n) complex (the n modes and their
conjugates: 2·n real numbers carry the real SSM of 2·n states). Everything runs in the dtype it is given.

kernel.py is the parallel form (the kernel, for a long convolution, and the state after a prefill); naive.py
the recurrence: `ssm_step` (what a recurrent step computes) and `reference_ssm`, the loop over positions the
parallel form is tested against.
"""

from __future__ import annotations

from zoology.ops.diagonal_ssm.kernel import final_state, ssm_kernel
from zoology.ops.diagonal_ssm.naive import reference_ssm, ssm_step

__all__ = ["final_state", "reference_ssm", "ssm_kernel", "ssm_step"]
