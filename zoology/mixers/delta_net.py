"""DeltaNet: linear attention whose state is corrected by the delta rule (Yang et al., 2024)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import state_numel, token_weights_method
from zoology.ops import dplr, fla_support
from zoology.ops.causal_conv import causal_depthwise_conv, conv_step, conv_window
from zoology.ops.dplr import fla
from zoology.ops.norms import rms_norm


class DeltaNet(nn.Module):
    """Per head: S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = K^{−1/2} S_tᵀ q_t, then a per-head
    RMSNorm and W_o.

    [q; k; v] = SiLU(ShortConv(W_qkv x)) (one depthwise causal conv of `conv_size` over the H·(2K + V)
    channels), q and k L2-normalised per head, β_t = σ(W_β x_t) per head; K = d_model / H, V = expand_v · K.
    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State: the conv's last conv_size − 1 inputs
    (H·(2K + V)·(conv_size − 1)) and S (H·K·V) per sequence, in float32 (float64 for float64 inputs).
    The parallel form is `dplr.chunked_dplr` (a = k, b = −β k, key β k: the WY/UT transform in chunks), or on
    CUDA fla-core's chunk_delta_rule (float32: fused_recurrent_delta_rule); `backend` picks (fla_support).
    """

    gated = False
    """Whether the fla kernel is one fla refuses on some devices (fla_support.gated_backward_refused)."""

    @staticmethod
    def check_args(d_model, num_heads, expand_v, conv_size, norm_eps, chunk_size, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if not isinstance(num_heads, int) or num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads!r} must be an integer >= 1 that divides d_model={d_model}")
        head_v = expand_v * d_model / num_heads
        if not expand_v > 0 or head_v != int(head_v) or head_v < 1:
            raise ValueError(
                f"expand_v={expand_v!r} must be > 0 with expand_v·d_model/num_heads a whole number "
                f"(d_model={d_model}, num_heads={num_heads})"
            )
        if not isinstance(conv_size, int) or conv_size < 1:
            raise ValueError(f"conv_size={conv_size!r} must be an integer >= 1")
        if not norm_eps > 0:
            raise ValueError(f"norm_eps={norm_eps!r} must be > 0")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r} must be None (automatic) or an integer >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 2,
        expand_v: float = 1.0,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        DeltaNet.check_args(
            d_model=d_model,
            num_heads=num_heads,
            expand_v=expand_v,
            conv_size=conv_size,
            norm_eps=norm_eps,
            chunk_size=chunk_size,
        )
        head_v = expand_v * d_model / num_heads
        self.d_model, self.layer_idx = d_model, layer_idx
        self.num_heads, self.head_k, self.head_v = num_heads, d_model // num_heads, int(head_v)
        self.head_dims = {"key": self.head_k, "value": self.head_v}
        fla_support.check_backend(backend, self.head_dims, self.gated, fla_support.DELTA_RULE_KEY_WIDTHS)
        self.conv_size, self.norm_eps, self.chunk_size, self.backend = conv_size, norm_eps, chunk_size, backend
        channels = num_heads * (2 * self.head_k + self.head_v)
        self.qkv_proj = nn.Linear(d_model, channels, bias=False)
        self.beta_proj = nn.Linear(d_model, num_heads, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(channels, conv_size))
        self.conv_bias = nn.Parameter(torch.empty(channels))
        # nn.Conv1d's initialisation of a depthwise conv (fan_in = conv_size).
        nn.init.kaiming_uniform_(self.conv_weight, a=math.sqrt(5))
        nn.init.uniform_(self.conv_bias, -1 / math.sqrt(conv_size), 1 / math.sqrt(conv_size))
        self.norm_weight = nn.Parameter(torch.ones(self.head_v))
        self.out_proj = nn.Linear(num_heads * self.head_v, d_model, bias=False)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor | None:
        """The log-decay log α_t per head (…, H) in float32 or wider; None: no decay (α = 1)."""
        return None

    def _heads(self, qkv: torch.Tensor, x: torch.Tensor):
        """Conv outputs (…, channels) and the layer input x (…, d) -> q, k (…, H, K) L2-normalised,
        v (…, H, V), β (…, H) and log α (…, H) or None, in the accumulator dtype."""
        acc = torch.promote_types(qkv.dtype, torch.float32)
        split = [self.num_heads * self.head_k] * 2 + [self.num_heads * self.head_v]
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)) for t in F.silu(qkv.to(acc)).split(split, dim=-1))
        beta = torch.sigmoid(self.beta_proj(x).to(acc))
        return F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, beta, self.log_decay(x)

    def _recurrence(self, q, k, v, beta, g):
        """The arguments of the dplr recurrence: a = k, b = −α β k, key β k, log-decay g per head."""
        g = torch.zeros_like(beta) if g is None else g
        return q, beta[..., None] * k, v, g[..., None], k, -(torch.exp(g) * beta)[..., None] * k

    def _fast(self, q, k, v, beta, g, dtype, final_state):
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if g is None:
            return fla.delta_rule(q, k, v, beta, self.head_k**-0.5, final_state)
        return fla.gated_delta_rule(q, k, v, g, beta, self.head_k**-0.5, final_state)

    def _output(self, o: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """o (…, H, V) -> W_o RMSNorm_head(o) (…, d_model)."""
        return self.out_proj(rms_norm(o, self.norm_weight, self.norm_eps).flatten(-2).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, final_state=False)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._parallel(x, final_state=True)

    def _parallel(self, x: torch.Tensor, final_state: bool):
        qkv_in = self.qkv_proj(x).transpose(0, 1)
        qkv = causal_depthwise_conv(qkv_in, self.conv_weight, self.conv_bias).transpose(0, 1)
        q, k, v, beta, g = self._heads(qkv, x)
        if fla_support.use_fla(self.backend, x, self.head_dims, self.gated, fla_support.DELTA_RULE_KEY_WIDTHS):
            o, S = self._fast(q, k, v, beta, g, qkv_in.dtype, final_state)
            o = o.to(q.dtype)
        else:
            o, S = dplr.chunked_dplr(*self._recurrence(q, k, v, beta, g), self.head_k**-0.5, self.chunk_size)
        y = self._output(o, x.dtype)
        if not final_state:
            return y, None
        return y, {"conv": conv_window(qkv_in, self.conv_size - 1).to(S.dtype), "S": S}

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The delta rule materialised per head (batch, H, seq, seq): W[t, s] = K^{−1/2} q_tᵀ (Π_{s<r≤t} α_r (I −
        β_r k_r k_rᵀ)) β_s k_s for s ≤ t (α = 1 without a decay), so that y = W·v per head for v the value part of
        SiLU(conv(W_qkv x)) and y = o, before the RMSNorm and W_o. From `dplr.token_weights`: the chunked WY form
        run on one-hot values (the transitions do not depend on v)."""
        qkv = causal_depthwise_conv(self.qkv_proj(x).transpose(0, 1), self.conv_weight, self.conv_bias)
        q, k_beta, _, g, a, b = self._recurrence(*self._heads(qkv.transpose(0, 1), x))
        return dplr.token_weights(q, k_beta, g, a, b, self.head_k**-0.5, self.chunk_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or self.qkv_proj.weight.dtype, torch.float32)
        h = self.num_heads
        return {
            "conv": torch.zeros(batch_size, self.conv_weight.shape[0], self.conv_size - 1, device=device, dtype=acc),
            "S": torch.zeros(batch_size, h, self.head_k, self.head_v, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        qkv, window = conv_step(state["conv"], self.qkv_proj(x_t), self.conv_weight, self.conv_bias)
        q, k, v, beta, g = self._heads(qkv, x_t)
        with torch.autocast(x_t.device.type, enabled=False):
            o, S = dplr.dplr_step(*self._recurrence(q, k, v, beta, g), self.head_k**-0.5, state["S"])
        return self._output(o, x_t.dtype), {"conv": window, "S": S}

    def state_size(self, seq_len: int) -> int:
        return state_numel(self.init_state(1, device="meta"))
