"""ReBased: normalised linear attention with a learnable square kernel (LayerNorm on q and k)."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoology.mixers import token_weights_method
from zoology.ops import linear_attention, poly_attention
from zoology.ops.feature_maps import square_feature_map, square_kernel

VIEWS = ("auto", "chunked", "fused")
SQUARE_COEFFS = (0.0, 0.0, 1.0)


class ReBased(nn.Module):
    """y_t = W_o · Σ_{j≤t} K(q̃_t, k̃_j) v_j / (Σ_{j≤t} K(q̃_t, k̃_j) + ε) per head, K(q, k) = (q·k / √f)².

    q̃ = LN_q(W_q x), k̃ = LN_k(W_k x) ∈ R^{H×f} with learnable γ, β over the H·f channels jointly;
    v = W_v x ∈ R^{H×d_h}; no biases. K = φ(q̃)·φ(k̃) with the compact square map
    φ(x) = [x_i²/√f, √2·x_i x_j/√f for i<j], D = f(f+1)/2. Sums run in float32 (float64 for float64
    inputs), also under autocast. Shapes: x (batch, seq, d_model) -> (batch, seq, d_model).
    State: S (batch, H, d_h, D) and z (batch, H, D), (d_model + H)·D elements per sequence.
    Training views: "chunked" (`linear_attention.chunked`, float32 with autocast off); "fused" (the
    Triton kernels of `poly_attention` on q̃, k̃, v in v's dtype — bf16 under autocast — with float32
    sums, and the same rounding floor ρ_t of `linear_attention.normalise` added to ε; CUDA, or the
    CPU under TRITON_INTERPRET=1); "auto" (default): fused for CUDA tensors when triton imports, else chunked.
    """

    @staticmethod
    def check_args(d_model, num_heads, feature_dim, eps, layer_norm_eps, chunk_size, view, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim={feature_dim} must be >= 1")
        if eps < 0 or layer_norm_eps <= 0:
            raise ValueError(f"eps={eps} must be >= 0 and layer_norm_eps={layer_norm_eps} > 0")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1")
        if view not in VIEWS:
            raise ValueError(f"view={view!r} must be one of {list(VIEWS)}")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 1,
        feature_dim: int = 16,
        eps: float = 1e-12,
        layer_norm_eps: float = 1e-5,
        chunk_size: int = 64,
        view: str = "auto",
    ):
        super().__init__()
        ReBased.check_args(
            d_model=d_model,
            num_heads=num_heads,
            feature_dim=feature_dim,
            eps=eps,
            layer_norm_eps=layer_norm_eps,
            chunk_size=chunk_size,
            view=view,
        )
        self.d_model, self.layer_idx = d_model, layer_idx
        self.num_heads, self.head_dim, self.feature_dim = num_heads, d_model // num_heads, feature_dim
        self.expanded_dim = feature_dim * (feature_dim + 1) // 2
        self.eps, self.chunk_size, self.view = eps, chunk_size, view
        self.q_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.q_norm = nn.LayerNorm(num_heads * feature_dim, eps=layer_norm_eps)
        self.k_norm = nn.LayerNorm(num_heads * feature_dim, eps=layer_norm_eps)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., d_model) -> q̃, k̃ (..., H, f) and v (..., H, d_h) in the dtypes the layers give."""
        heads = (*x.shape[:-1], self.num_heads)
        q = self.q_norm(self.q_proj(x)).view(*heads, self.feature_dim)
        k = self.k_norm(self.k_proj(x)).view(*heads, self.feature_dim)
        v = self.v_proj(x).view(*heads, self.head_dim)
        return q, k, v

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., d_model) -> q̃, k̃ (..., H, f) and v (..., H, d_h) in the accumulator dtype."""
        acc = torch.promote_types(x.dtype, torch.float32)
        return tuple(t.to(acc) for t in self._project(x))

    def _fused_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """y (batch, H, seq, d_h) in v's dtype: Σ K v / (Σ K + ε + ρ_t), K = (q̃·k̃/√f)², with
        ρ_t = 8·u·|φ(q̃_t)|·|z_t| as in `linear_attention.normalise` (|φ(q̃)| = |q̃|²/√f, z_t = Σ_{j≤t} φ(k̃_j))."""
        acc = torch.promote_types(v.dtype, torch.float32)
        with torch.no_grad(), torch.autocast(v.device.type, enabled=False):
            q_acc, k_acc = q.to(acc), k.to(acc)
            z_norm = square_feature_map(k_acc).cumsum(-2).norm(dim=-1)
            phi_q_norm = q_acc.square().sum(-1) / math.sqrt(self.feature_dim)
            offset = self.eps + linear_attention.rounding_floor(phi_q_norm, z_norm, acc)
        scale = 1 / math.sqrt(self.feature_dim)
        return poly_attention.causal_poly_attention(q.to(v.dtype), k.to(v.dtype), v, SQUARE_COEFFS, scale, offset)[0]

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """(batch, H, seq, d_h) -> W_o y (batch, seq, d_model)."""
        b, _, seq_len, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, seq_len, self.d_model))

    def _parallel(self, x: torch.Tensor, with_state: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The output for every position and, with_state, the state (S, z) after the last one."""
        acc = torch.promote_types(x.dtype, torch.float32)
        q, k, v = (t.transpose(1, 2) for t in self._project(x))
        if not poly_attention.use_fused(self.view, v):
            y, (states, normalisers) = linear_attention.chunked(
                q.to(acc), k.to(acc), v.to(acc), square_kernel, square_feature_map, self.eps, self.chunk_size
            )
            return self._merge(y.to(x.dtype)), {"S": states, "z": normalisers}
        y = self._merge(self._fused_attend(q, k, v))
        if not with_state:
            return y, None
        S, z = linear_attention.final_state(k.to(acc), v.to(acc), square_feature_map)
        return y, {"S": S, "z": z}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, with_state=False)[0]

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """W_tj = K(q̃_t, k̃_j) / (Σ_{i≤t} K(q̃_t, k̃_i) + ε + ρ_t) for j ≤ t, K = (q̃·k̃/√f)², ρ_t the rounding floor of
        `linear_attention.normalise` (batch, H, seq, seq): y = W·v per head for v = W_v x and y the normalised
        attention before W_o."""
        q, k, _ = (t.transpose(1, 2) for t in self._qkv(x))
        return linear_attention.quadratic_weights(q, k, square_kernel, square_feature_map, self.eps)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._parallel(x, with_state=True)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        shape = (batch_size, self.num_heads)
        return {
            "S": torch.zeros(*shape, self.head_dim, self.expanded_dim, device=device, dtype=acc),
            "z": torch.zeros(*shape, self.expanded_dim, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v = self._qkv(x_t)
        y, (S, z) = linear_attention.step(q, k, v, (state["S"], state["z"]), square_feature_map, self.eps)
        return self.out_proj(y.reshape(x_t.shape[0], self.d_model).to(x_t.dtype)), {"S": S, "z": z}

    def state_size(self, seq_len: int) -> int:
        return (self.d_model + self.num_heads) * self.expanded_dim
