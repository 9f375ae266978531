"""LEAP: causal additive attention (Fastformer-style pooling) over a window or the whole prefix.

Additive pooling of vectors u_t (H heads of d_h) with a learned w ∈ R^{H×d_h}:
    α_t = exp(w·u_t / √d_h) per head,   g_t = Σ_{j∈W(t)} α_j u_j / Σ_{j∈W(t)} α_j,
with W(t) = {max(0, t−w+1) … t} for a window of w tokens (the token itself and the w−1 before it),
or 0 … t when global. The parallel form is `zoology.ops.additive_pooling` (exponents relative to
causal maxima, windows summed over bands of keys); the recurrent form is `Leap.step`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoology.mixers import token_weights_method
from zoology.ops.additive_pooling import pool_global, pool_window, pooling_weights


def _scores(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(..., H, d_h), (H, d_h) -> w·u / √d_h (..., H)."""
    return (u * w).sum(-1) / math.sqrt(w.shape[-1])


class Leap(nn.Module):
    """One LEAP layer: q̄ = pool(q; w_q), p = q̄ ⊙ k, k̄ = pool(p; w_k), y = W_o(k̄ ⊙ v).

    q, k, v = W_q x, W_k x, W_v x (d → d, no bias), H heads of d_h; w_q, w_k ∈ R^{H×d_h} ~ N(0, 0.02).
    Window: `window_size` tokens (None: global), or `schedule_layers = n` for the schedule of an
    n-layer model: layer ℓ < n−1 pools over w_ℓ = 4·2^ℓ tokens and layer n−1 is global (the mixer
    knows only its layer_idx, so a preset with n LEAP layers passes n here).
    Pooling runs in float32 (float64 for float64 inputs), also under autocast.
    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model).
    State per pooling round (two per layer): global, the running Σαu (d_model), Σα (H) and max (H);
    windowed, the last min(t, w−1) pooled vectors (d_model each; their α is recomputed).
    """

    @staticmethod
    def check_args(d_model, layer_idx, num_heads, window_size, schedule_layers, chunk_size, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if window_size is not None and window_size < 1:
            raise ValueError(f"window_size={window_size} must be >= 1, or None for global pooling")
        if schedule_layers is not None:
            if window_size is not None:
                raise ValueError("set window_size or schedule_layers, not both")
            if not 0 <= layer_idx < schedule_layers:
                raise ValueError(f"schedule_layers={schedule_layers} must exceed layer_idx={layer_idx}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 1,
        window_size: int | None = None,
        schedule_layers: int | None = None,
        chunk_size: int = 64,
    ):
        super().__init__()
        Leap.check_args(
            d_model=d_model,
            layer_idx=layer_idx,
            num_heads=num_heads,
            window_size=window_size,
            schedule_layers=schedule_layers,
            chunk_size=chunk_size,
        )
        if schedule_layers is not None:
            window_size = None if layer_idx == schedule_layers - 1 else 4 * 2**layer_idx
        self.d_model, self.layer_idx = d_model, layer_idx
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.window_size, self.chunk_size = window_size, chunk_size
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.q_pool = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.02)
        self.k_pool = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.02)
        self.q_pool._no_reinit = True
        self.k_pool._no_reinit = True

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., d_model) -> q, k, v (..., H, d_h) in the accumulator dtype."""
        acc = torch.promote_types(x.dtype, torch.float32)
        heads = (*x.shape[:-1], self.num_heads, self.head_dim)
        return tuple(proj(x).to(acc).view(heads) for proj in (self.q_proj, self.k_proj, self.v_proj))

    def _pool(self, u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """u (b, l, H, d_h) -> pooled (b, l, H, d_h) and this round's recurrent state."""
        seq_len = u.shape[1]
        scores = _scores(u, w.to(u.dtype)).transpose(1, 2)
        u_heads = u.transpose(1, 2)
        if self.window_size is not None:
            kept = min(seq_len, self.window_size - 1)
            state = {"buffer": u[:, seq_len - kept :].flatten(2)}
            if self.window_size < seq_len:
                return pool_window(u_heads, scores, self.window_size, self.chunk_size).transpose(1, 2), state
        numerator, denominator, running_max = pool_global(u_heads, scores, self.chunk_size)
        pooled = (numerator / denominator[..., None]).transpose(1, 2)
        if self.window_size is not None:
            return pooled, state
        last = {"num": numerator[:, :, -1], "den": denominator[:, :, -1], "max": running_max[:, :, -1]}
        return pooled, last

    def _pool_step(self, u_t: torch.Tensor, w: torch.Tensor, state: dict[str, torch.Tensor]):
        """u_t (b, H, d_h) -> pooled (b, H, d_h) and the new state of this round."""
        scores = _scores(u_t, w.to(u_t.dtype))
        if self.window_size is None:
            new_max = torch.maximum(state["max"], scores)
            decay, weight = (state["max"] - new_max).exp(), (scores - new_max).exp()
            numerator = decay[..., None] * state["num"] + weight[..., None] * u_t
            denominator = decay * state["den"] + weight
            return numerator / denominator[..., None], {"num": numerator, "den": denominator, "max": new_max}
        b = u_t.shape[0]
        window = torch.cat([state["buffer"].view(b, -1, self.num_heads, self.head_dim), u_t[:, None]], dim=1)
        weights = _scores(window, w.to(u_t.dtype)).softmax(dim=1)
        pooled = (weights[..., None] * window).sum(1)
        kept = window[:, window.shape[1] - min(window.shape[1], self.window_size - 1) :]
        return pooled, {"buffer": kept.flatten(2)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        q, k, v = self._qkv(x)
        with torch.autocast(x.device.type, enabled=False):
            q_bar, q_state = self._pool(q, self.q_pool)
            k_bar, k_state = self._pool(q_bar * k, self.k_pool)
        y = (k_bar * v).flatten(2).to(x.dtype)
        return self.out_proj(y), {"q": q_state, "k": k_state}

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The second round's pooling weights P_tj = α_j / Σ_{i∈W(t)} α_i, α_j = exp(w_k·p_j / √d_h) for j ∈ W(t)
        (batch, H, seq, seq): y = W·v per head for "v" the pooled vectors p = q̄ ⊙ k and y = k̄, which the layer
        multiplies by its v before W_o (output W_o(k̄ ⊙ v)). The first round (q̄ = pool(q; w_q)) is inside p."""
        q, k, _ = self._qkv(x)
        q_bar, _ = self._pool(q, self.q_pool)
        pooled = q_bar * k
        return pooling_weights(_scores(pooled, self.k_pool.to(pooled.dtype)).transpose(1, 2), self.window_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, dict[str, torch.Tensor]]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        heads = (batch_size, self.num_heads)
        if self.window_size is None:
            round_state = lambda: {  # noqa: E731
                "num": torch.zeros(*heads, self.head_dim, device=device, dtype=acc),
                "den": torch.zeros(*heads, device=device, dtype=acc),
                "max": torch.full(heads, -math.inf, device=device, dtype=acc),
            }
        else:
            round_state = lambda: {"buffer": torch.zeros(batch_size, 0, self.d_model, device=device, dtype=acc)}  # noqa: E731
        return {"q": round_state(), "k": round_state()}

    def step(self, x_t: torch.Tensor, state: dict[str, dict[str, torch.Tensor]]):
        q, k, v = self._qkv(x_t)
        with torch.autocast(x_t.device.type, enabled=False):
            q_bar, q_state = self._pool_step(q, self.q_pool, state["q"])
            k_bar, k_state = self._pool_step(q_bar * k, self.k_pool, state["k"])
        y = (k_bar * v).flatten(1).to(x_t.dtype)
        return self.out_proj(y), {"q": q_state, "k": k_state}

    def state_size(self, seq_len: int) -> int:
        if self.window_size is None:
            return 2 * (self.d_model + 2 * self.num_heads)
        return 2 * min(seq_len, self.window_size - 1) * self.d_model
