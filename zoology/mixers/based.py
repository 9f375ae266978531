"""Based: causal normalised linear attention with the 2nd-order Taylor feature map."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from zoology.mixers import state_numel, token_weights_method
from zoology.ops import linear_attention, poly_attention
from zoology.ops.feature_maps import TaylorFeatureMap

VIEWS = ("auto", "chunked", "quadratic", "fused")
TAYLOR_COEFFS = (1.0, 1.0, 0.5)


def _promote(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast to the accumulator dtype: float32, or float64 for float64 inputs."""
    acc = torch.promote_types(tensors[0].dtype, torch.float32)
    return tuple(t.to(acc) for t in tensors)


def _full_precision(device: torch.device):
    """Autocast off, so the sums below run in the dtype of their inputs."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class Based(nn.Module):
    """Per head: y_t = Σ_{j≤t} (φ(q_t)·φ(k_j)) v_j / (φ(q_t)·Σ_{j≤t} φ(k_j) + ε), then W_o.

    q = W_q x, k = W_k x ∈ R^{H×f}, v = W_v x ∈ R^{H×d_h}, no biases; φ the compact Taylor map with
    D = 1 + f + f(f+1)/2. Shapes: x (batch, seq, d_model) -> (batch, seq, d_model).
    Training views: "quadratic" (masked l×l kernel 1 + s + s²/2) or "chunked" (per chunk of
    `chunk_size`: the quadratic view inside the chunk plus the state of the chunks before it), both
    in float32 with autocast off; "fused" (the Triton kernels of `poly_attention`, fed q, k, v in
    their own dtype — bf16 under autocast — with float32 sums; CUDA, or the CPU under
    TRITON_INTERPRET=1); "auto" (default): fused for CUDA tensors when triton imports, else chunked.
    State: S = Σ v φ(k)ᵀ (H, d_h, D) and z = Σ φ(k) (H, D), (d_model + H)·D elements per sequence,
    in float32 (float64 for float64 inputs), as are all sums, also under bf16 autocast.
    """

    @staticmethod
    def check_args(d_model, num_heads, feature_dim, eps, view, chunk_size, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim={feature_dim} must be >= 1")
        if not eps >= 0:
            raise ValueError(f"eps={eps} must be >= 0")
        if view not in VIEWS:
            raise ValueError(f"view={view!r} must be one of {list(VIEWS)}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        feature_dim: int = 16,
        num_heads: int = 1,
        eps: float = 1e-12,
        view: str = "auto",
        chunk_size: int = 64,
    ):
        super().__init__()
        Based.check_args(
            d_model=d_model, num_heads=num_heads, feature_dim=feature_dim, eps=eps, view=view, chunk_size=chunk_size
        )
        self.d_model, self.layer_idx = d_model, layer_idx
        self.feature_dim, self.num_heads, self.head_dim = feature_dim, num_heads, d_model // num_heads
        self.eps, self.view, self.chunk_size = eps, view, chunk_size
        self.q_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.feature_map = TaylorFeatureMap(feature_dim)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, seq, d) -> q, k (batch, H, seq, f) and v (batch, H, seq, d_h)."""
        b, l, _ = x.shape
        q = self.q_proj(x).view(b, l, self.num_heads, self.feature_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, l, self.num_heads, self.feature_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, l, self.num_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, _, l, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, l, self.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(self._attend(*self._qkv(x)))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """y (batch, H, seq, d_h) in v's dtype from q, k, v as projected, in the training view."""
        if poly_attention.use_fused(self.view, q):
            scale = 1 / math.sqrt(self.feature_dim)
            return poly_attention.causal_poly_attention(q, k, v, TAYLOR_COEFFS, scale, self.eps)[0]
        with _full_precision(q.device):
            return self.attend(*_promote(q, k, v)).to(v.dtype)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The normalised linear attention in the quadratic or chunked view, in the dtype of q, k, v."""
        if self.view == "quadratic":
            num, den = poly_attention.quadratic_taylor_terms(q, k, v)
        else:
            num, den = poly_attention.chunked_taylor_terms(q, k, v, self.feature_map, self.chunk_size)
        return num / (den[..., None] + self.eps)

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """W_tj = K(q_t, k_j) / (Σ_{i≤t} K(q_t, k_i) + ε) for j ≤ t, K = 1 + s + s²/2 = φ(q)·φ(k) with s = q·k/√f
        (batch, H, seq, seq): y = W·v per head for v = W_v x and y the normalised attention before W_o."""
        q, k, _ = self._qkv(x)
        return poly_attention.taylor_weights(q, k, self.eps)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, k, v = self._qkv(x)
        y = self._attend(q, k, v)
        S, z = linear_attention.final_state(*_promote(k, v), self.feature_map)
        return self._merge(y), {"S": S, "z": z}

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        h, D = self.num_heads, self.feature_map.dim
        return {
            "S": torch.zeros(batch_size, h, self.head_dim, D, device=device, dtype=acc),
            "z": torch.zeros(batch_size, h, D, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v = (t[:, :, 0] for t in self._qkv(x_t[:, None]))
        with _full_precision(x_t.device):
            acc = state["S"].dtype
            phi_q, phi_k = self.feature_map(q.to(acc)), self.feature_map(k.to(acc))
            S = state["S"] + v.to(acc)[..., None] * phi_k[..., None, :]
            z = state["z"] + phi_k
            y = (S @ phi_q[..., None])[..., 0] / ((z * phi_q).sum(-1, keepdim=True) + self.eps)
        return self._merge(y[:, :, None].to(v.dtype))[:, 0], {"S": S, "z": z}

    def state_size(self, seq_len: int) -> int:
        return state_numel(self.init_state(1, device="meta"))
