"""Causal linear attention with the ELU+1 feature map (Katharopoulos et al., 2020)."""

from __future__ import annotations

import torch
from torch import nn

from zoology.mixers import token_weights_method
from zoology.ops.feature_maps import elu_feature_map
from zoology.ops.linear_attention import chunked_on_features, weights_on_features

EPS = 1e-6


class LinearAttention(nn.Module):
    """Per head, with φ = elu + 1 and [q; k; v] = W_qkv x (d → d each, no 1/√d scale):
    y_t = φ(q_t)ᵀ S_t / (φ(q_t)·z_t + ε), S_t = Σ_{j≤t} φ(k_j) v_jᵀ, z_t = Σ_{j≤t} φ(k_j), ε = 1e-6;
    output W_o y.

    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State: S (heads, d_h, d_h) and
    z (heads, d_h), d_model·(d_h + 1) elements per sequence whatever the length.
    The parallel form is chunked: a masked quadratic product inside each chunk of `chunk_size`
    positions plus the running (S, z) of the chunks before, so it stores one d_h×d_h sum per chunk,
    never one per position. S, z and the products run in float32 (float64 for float64 inputs), also
    under autocast.
    """

    @staticmethod
    def check_args(d_model, num_heads, chunk_size, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 1,
        chunk_size: int = 64,
        bias: bool = True,
    ):
        super().__init__()
        LinearAttention.check_args(d_model=d_model, num_heads=num_heads, chunk_size=chunk_size)
        self.d_model, self.layer_idx = d_model, layer_idx
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _features(self, x: torch.Tensor):
        """x (batch, seq, d) -> φ(q), φ(k), v as (batch, heads, seq, d_h) in the accumulator dtype,
        and the projection's dtype (bf16 under bf16 autocast)."""
        b, l, _ = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.to(torch.promote_types(qkv.dtype, torch.float32)).unbind(0)
        return elu_feature_map(q), elu_feature_map(k), v, qkv.dtype

    def _merge(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        b, _, l, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, l, self.d_model).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """W_tj = φ(q_t)·φ(k_j) / (Σ_{i≤t} φ(q_t)·φ(k_i) + ε) for j ≤ t (batch, H, seq, seq): y = W·v per head for v
        the value projection (the v of W_qkv x) and y the normalised attention before W_o."""
        q, k, _, _ = self._features(x)
        return weights_on_features(q, k, EPS)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, k, v, dtype = self._features(x)
        y, (S, z) = chunked_on_features(q, k, v, EPS, self.chunk_size)
        return self._merge(y, dtype), {"S": S, "z": z}

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        h, dh = self.num_heads, self.head_dim
        return {
            "S": torch.zeros(batch_size, h, dh, dh, device=device, dtype=acc),
            "z": torch.zeros(batch_size, h, dh, device=device, dtype=acc),
        }

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v, dtype = self._features(x_t[:, None])
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        with torch.autocast(x_t.device.type, enabled=False):
            S = state["S"] + k[..., :, None] * v[..., None, :]
            z = state["z"] + k
            y = (q[..., None, :] @ S)[..., 0, :] / ((q * z).sum(-1, keepdim=True) + EPS)
        return self._merge(y[:, :, None], dtype)[:, 0], {"S": S, "z": z}

    def state_size(self, seq_len: int) -> int:
        return self.d_model * (self.head_dim + 1)
