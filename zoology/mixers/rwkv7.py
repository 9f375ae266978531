"""RWKV-7 ("Goose") time mixing: a decay per key channel plus an in-context delta-rule update (Peng et al., 2025)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import state_numel, token_weights_method
from zoology.ops import dplr, fla_support
from zoology.ops.dplr import fla
from zoology.ops.norms import head_layer_norm

MIX_EXPONENTS = (0.2, 0.9, 0.7, 0.7, 0.9, 0.2)
"""Token-shift mixes μ_• = 1 − (i/d)^p at init, for r, w, k, v, a, g in that order."""
MAX_DECAY = math.exp(-0.5)
"""The log-decay is −e^{−0.5} σ(·) ∈ (−0.61, 0): a per-step decay factor in (0.545, 1)."""
DECAY_BIAS_RANGE = (-7.0, 1.0)
"""Initial decay-LoRA biases per head channel, from slow (σ(−7): memory ~2000 tokens) to fast (σ(1))."""


class RWKV7(nn.Module):
    """Token shift x_• = x_t + (x_{t−1} − x_t) ⊙ μ_• for • ∈ {r, w, k, v, a, g}; r, k, v = W_• x_•;
    log-decay w = −e^{−0.5} σ(LoRA_tanh(x_w)) per key channel; a = σ(LoRA(x_a)); gate g = LoRA_σ(x_g);
    κ̂ = L2norm(k ⊙ k_k) per head, k̃ = k ⊙ (1 + (a − 1) ⊙ k_a). Per head (S ∈ R^{K×V}, K = V = head_dim):
    S_t = diag(e^{w_t}) S_{t−1} − (κ̂_t ⊙ a_t)(κ̂_tᵀ S_{t−1}) + k̃_t v_tᵀ, o_t = S_tᵀ r_t;
    y = W_o ((GroupNorm_heads(o) + (Σ r ⊙ k̃ ⊙ r_k) v) ⊙ g).

    The reference model's value residual (later layers mixing in layer 0's v) is left out: a mixer sees only
    its own input. Shapes: x (batch, seq, d_model) -> (batch, seq, d_model), H = d_model / head_dim (head_dim
    min(64, d_model) by default). State: the last input (d_model, for the token shift) and S (H·K·V = d_model·
    head_dim) per sequence, in float32 (float64 for float64 inputs). The parallel form is `dplr.chunked_dplr`
    (a = −κ̂, b = κ̂ ⊙ a), or on CUDA fla-core's chunk_rwkv7 with the same a, b (`backend`).
    """

    @staticmethod
    def check_args(
        d_model, head_dim, decay_low_rank_dim, a_low_rank_dim, gate_low_rank_dim, norm_eps, chunk_size, **_
    ) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        head_dim = min(64, d_model) if head_dim is None else head_dim
        if not isinstance(head_dim, int) or head_dim < 1 or d_model % head_dim:
            raise ValueError(
                f"head_dim={head_dim!r} must be None (64) or an integer >= 1 that divides d_model={d_model}"
            )
        for name, rank in (
            ("decay_low_rank_dim", decay_low_rank_dim),
            ("a_low_rank_dim", a_low_rank_dim),
            ("gate_low_rank_dim", gate_low_rank_dim),
        ):
            if not isinstance(rank, int) or rank < 1:
                raise ValueError(f"{name}={rank!r} must be an integer >= 1")
        if not norm_eps > 0:
            raise ValueError(f"norm_eps={norm_eps!r} must be > 0")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} must be None (automatic) or an integer >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        head_dim: int | None = None,
        decay_low_rank_dim: int = 16,
        a_low_rank_dim: int = 16,
        gate_low_rank_dim: int = 32,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        RWKV7.check_args(
            d_model=d_model,
            head_dim=head_dim,
            decay_low_rank_dim=decay_low_rank_dim,
            a_low_rank_dim=a_low_rank_dim,
            gate_low_rank_dim=gate_low_rank_dim,
            norm_eps=norm_eps,
            chunk_size=chunk_size,
        )
        head_dim = min(64, d_model) if head_dim is None else head_dim
        fla_support.check_backend(backend, {"head_dim": head_dim})
        self.d_model, self.layer_idx = d_model, layer_idx
        self.head_dim, self.num_heads = head_dim, d_model // head_dim
        self.norm_eps, self.chunk_size, self.backend = norm_eps, chunk_size, backend
        d = d_model
        position = torch.arange(d) / d
        self.mix = nn.Parameter(torch.stack([1 - position**p for p in MIX_EXPONENTS]))
        self.r_proj, self.k_proj, self.v_proj = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.decay_lora = nn.Sequential(
            nn.Linear(d, decay_low_rank_dim, bias=False), nn.Tanh(), nn.Linear(decay_low_rank_dim, d)
        )
        decay_bias = self.decay_lora[2].bias
        decay_bias.data.copy_(torch.linspace(*DECAY_BIAS_RANGE, head_dim).repeat(self.num_heads))
        decay_bias._no_reinit = True
        self.a_lora = nn.Sequential(nn.Linear(d, a_low_rank_dim, bias=False), nn.Linear(a_low_rank_dim, d))
        self.gate_lora = nn.Sequential(
            nn.Linear(d, gate_low_rank_dim, bias=False), nn.Sigmoid(), nn.Linear(gate_low_rank_dim, d, bias=False)
        )
        self.k_k = nn.Parameter(torch.full((d,), 0.85))
        self.k_a = nn.Parameter(torch.ones(d))
        self.r_k = nn.Parameter(torch.zeros(self.num_heads, head_dim))
        self.norm_weight = nn.Parameter(torch.ones(d))
        self.norm_bias = nn.Parameter(torch.zeros(d))
        self.out_proj = nn.Linear(d, d, bias=False)

    def _heads(self, x: torch.Tensor, previous: torch.Tensor):
        """x and the inputs one position earlier (…, d) -> r, w, k̃, v, a = −κ̂, b = κ̂ ⊙ a (…, H, K) in the
        accumulator dtype, the gate g (…, d) and the projections' dtype."""
        acc = torch.promote_types(x.dtype, torch.float32)
        shifted = x[..., None, :] + (previous.to(x.dtype) - x)[..., None, :] * self.mix.to(x.dtype)
        x_r, x_w, x_k, x_v, x_a, x_g = shifted.unbind(-2)
        r, k, v = self.r_proj(x_r), self.k_proj(x_k), self.v_proj(x_v)
        dtype = r.dtype
        r, k, v = r.to(acc), k.to(acc), v.to(acc)
        w = -MAX_DECAY * torch.sigmoid(self.decay_lora(x_w).to(acc))
        rate = torch.sigmoid(self.a_lora(x_a).to(acc))
        heads = lambda t: t.unflatten(-1, (self.num_heads, self.head_dim))  # noqa: E731
        kappa = F.normalize(heads(k * self.k_k.to(acc)), dim=-1)
        k = k * (1 + (rate - 1) * self.k_a.to(acc))
        return heads(r), heads(w), heads(k), heads(v), -kappa, kappa * heads(rate), self.gate_lora(x_g), dtype

    def _output(self, o, r, k, v, gate, dtype):
        """o, r, k̃, v (…, H, K) and the gate (…, d) -> W_o ((GroupNorm(o) + (Σ r ⊙ k̃ ⊙ r_k) v) ⊙ g)."""
        bonus = (r * k * self.r_k.to(r.dtype)).sum(-1, keepdim=True) * v
        o = head_layer_norm(o, self.norm_weight, self.norm_bias, self.head_dim * self.norm_eps) + bonus
        return self.out_proj((o.flatten(-2) * gate.to(o.dtype)).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, final_state=False)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._parallel(x, final_state=True)

    def _parallel(self, x: torch.Tensor, final_state: bool):
        previous = F.pad(x, (0, 0, 1, 0))[:, :-1]
        r, w, k, v, a, b, gate, dtype = self._heads(x, previous)
        if fla_support.use_fla(self.backend, x, {"head_dim": self.head_dim}):
            o, S = fla.rwkv7(*(t.to(dtype) for t in (r, w, k, v, a, b)), final_state)
            o = o.to(r.dtype)
        else:
            o, S = dplr.chunked_dplr(r, k, v, w, a, b, 1.0, self.chunk_size)
        y = self._output(o, r, k, v, gate, x.dtype)
        if not final_state:
            return y, None
        return y, {"shift": x[:, -1].to(S.dtype, copy=True), "S": S}

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The state's readout materialised per head (batch, H, seq, seq): W[t, s] = r_tᵀ (Π_{s<ρ≤t} (diag(e^{w_ρ})
        − κ̂_ρ (κ̂_ρ ⊙ a_ρ)ᵀ)) k̃_s for s ≤ t, so that y = W·v per head for v = W_v x_v and y = o = S_tᵀ r_t, before
        the GroupNorm; the bonus (Σ r ⊙ k̃ ⊙ r_k) v_t added after the norm, and the gate, are not in W. From
        `dplr.token_weights` (the chunked form run on one-hot values)."""
        r, w, k, _, a, b, _, _ = self._heads(x, F.pad(x, (0, 0, 1, 0))[:, :-1])
        return dplr.token_weights(r, k, w, a, b, 1.0, self.chunk_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.r_proj.weight.dtype, torch.float32)
        h, n = self.num_heads, self.head_dim
        return {
            "shift": torch.zeros(batch_size, self.d_model, device=device, dtype=acc),
            "S": torch.zeros(batch_size, h, n, n, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        r, w, k, v, a, b, gate, _ = self._heads(x_t, state["shift"])
        with torch.autocast(x_t.device.type, enabled=False):
            o, S = dplr.dplr_step(r, k, v, w, a, b, 1.0, state["S"])
        shift = x_t.to(state["shift"].dtype, copy=True)
        return self._output(o, r, k, v, gate, x_t.dtype), {"shift": shift, "S": S}

    def state_size(self, seq_len: int) -> int:
        return state_numel(self.init_state(1, device="meta"))
