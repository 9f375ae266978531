"""Gated linear attention: a decay per key channel, chosen by the input (Yang et al., 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import state_numel, token_weights_method
from zoology.ops import dplr, fla_support
from zoology.ops.dplr import fla
from zoology.ops.norms import rms_norm


class GLA(nn.Module):
    """Per head: S_t = diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ, o_t = K^{−1/2} S_tᵀ q_t;
    y = W_o (RMSNorm_head(o) ⊙ swish(W_g x)).

    q, k = W_q x, W_k x (H·K = expand_k·d_model), v = W_v x (H·V = expand_v·d_model), no biases;
    gk_t = logsigmoid(W₂W₁ x_t + b) / τ per key channel (W₁ of rank gate_low_rank_dim, τ = gate_logit_normalizer).
    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State: S (H·K·V) per sequence, in float32
    (float64 for float64 inputs). The parallel form is `dplr.chunked_dplr` (no low-rank term, decays per
    channel computed as differences of cumulative log-decays), or on CUDA fla-core's chunk_gla (`backend`).
    """

    @staticmethod
    def check_args(
        d_model, num_heads, expand_k, expand_v, gate_low_rank_dim, gate_logit_normalizer, norm_eps, chunk_size, **_
    ) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads={num_heads!r} must be an integer >= 1")
        for name, expand in (("expand_k", expand_k), ("expand_v", expand_v)):
            width = expand * d_model / num_heads
            if not expand > 0 or width != int(width) or width < 1:
                raise ValueError(
                    f"{name}={expand!r} must be > 0 with {name}·d_model/num_heads a whole number "
                    f"(d_model={d_model}, num_heads={num_heads})"
                )
        if not isinstance(gate_low_rank_dim, int) or gate_low_rank_dim < 1:
            raise ValueError(f"gate_low_rank_dim={gate_low_rank_dim!r} must be an integer >= 1")
        if not gate_logit_normalizer > 0:
            raise ValueError(f"gate_logit_normalizer={gate_logit_normalizer!r} must be > 0")
        if not norm_eps > 0:
            raise ValueError(f"norm_eps={norm_eps!r} must be > 0")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} must be None (automatic) or an integer >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 2,
        expand_k: float = 0.5,
        expand_v: float = 1.0,
        gate_low_rank_dim: int = 16,
        gate_logit_normalizer: float = 16.0,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        GLA.check_args(
            d_model=d_model,
            num_heads=num_heads,
            expand_k=expand_k,
            expand_v=expand_v,
            gate_low_rank_dim=gate_low_rank_dim,
            gate_logit_normalizer=gate_logit_normalizer,
            norm_eps=norm_eps,
            chunk_size=chunk_size,
        )
        self.d_model, self.layer_idx, self.num_heads = d_model, layer_idx, num_heads
        self.head_k, self.head_v = int(expand_k * d_model) // num_heads, int(expand_v * d_model) // num_heads
        self.head_dims = {"key": self.head_k, "value": self.head_v}
        fla_support.check_backend(backend, self.head_dims)
        self.gate_logit_normalizer, self.norm_eps = gate_logit_normalizer, norm_eps
        self.chunk_size, self.backend = chunk_size, backend
        key_dim, value_dim = num_heads * self.head_k, num_heads * self.head_v
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.gk_proj = nn.Sequential(
            nn.Linear(d_model, gate_low_rank_dim, bias=False), nn.Linear(gate_low_rank_dim, key_dim, bias=True)
        )
        self.g_proj = nn.Linear(d_model, value_dim, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.head_v))
        self.out_proj = nn.Linear(value_dim, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        """x (…, d) -> q, k, gk (…, H, K) and v (…, H, V) in the projections' dtype, gk in the accumulator's."""
        acc = torch.promote_types(x.dtype, torch.float32)
        heads = lambda t: t.unflatten(-1, (self.num_heads, -1))  # noqa: E731
        gk = F.logsigmoid(self.gk_proj(x).to(acc)) / self.gate_logit_normalizer
        return heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)), heads(gk)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (…, H, V) and the layer input x -> W_o (RMSNorm_head(o) ⊙ swish(W_g x)) (…, d_model)."""
        gate = F.silu(self.g_proj(x).to(o.dtype))
        return self.out_proj((rms_norm(o, self.norm_weight, self.norm_eps).flatten(-2) * gate).to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, final_state=False)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._parallel(x, final_state=True)

    def _parallel(self, x: torch.Tensor, final_state: bool):
        q, k, v, gk = self._heads(x)
        scale = self.head_k**-0.5
        if fla_support.use_fla(self.backend, x, self.head_dims):
            o, S = fla.gla(q, k, v, gk, scale, final_state)
            o = o.to(gk.dtype)
        else:
            o, S = dplr.chunked_dplr(
                q.to(gk.dtype), k.to(gk.dtype), v.to(gk.dtype), gk, None, None, scale, self.chunk_size
            )
        return self._output(o, x), ({"S": S} if final_state else None)

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The gated kernel per head (batch, H, seq, seq): W[t, s] = K^{−1/2} Σ_j q_tj k_sj e^{Σ_{s<r≤t} gk_rj} for
        s ≤ t, so that y = W·v per head for v = W_v x and y = o, before the RMSNorm, the swish gate and W_o.
        From `dplr.token_weights` (the chunked form)."""
        q, k, _, gk = self._heads(x)
        q, k = q.to(gk.dtype), k.to(gk.dtype)
        return dplr.token_weights(q, k, gk, scale=self.head_k**-0.5, chunk_size=self.chunk_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.q_proj.weight.dtype, torch.float32)
        shape = (batch_size, self.num_heads, self.head_k, self.head_v)
        return {"S": torch.zeros(shape, device=device, dtype=acc)}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v, gk = self._heads(x_t)
        with torch.autocast(x_t.device.type, enabled=False):
            acc = state["S"].dtype
            o, S = dplr.dplr_step(
                q.to(acc), k.to(acc), v.to(acc), gk.to(acc), None, None, self.head_k**-0.5, state["S"]
            )
        return self._output(o, x_t), {"S": S}

    def state_size(self, seq_len: int) -> int:
        return state_numel(self.init_state(1, device="meta"))
