"""Causal multi-head softmax attention; its recurrent form is a KV cache that grows with t."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoology.mixers import token_weights_method


class Attention(nn.Module):
    """y = W_o · softmax(q kᵀ / √d_h, causal) v per head, with [q; k; v] = W_qkv x.

    Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State after t tokens: the keys and
    values seen so far, 2·d_model·t elements per sequence, kept in float32 (float64 for float64
    inputs), also under bf16 autocast.
    """

    window_size: int | None = None  # keys a query sees (itself included); None: every earlier key

    @staticmethod
    def check_args(d_model, num_heads, dropout, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        num_heads: int = 1,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        Attention.check_args(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.d_model, self.layer_idx = d_model, layer_idx
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, l, _ = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, _, l, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, l, self.d_model))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        return self._merge(F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attend(*self._qkv(x))

    def _recent(self, cache: torch.Tensor, room: int = 0) -> torch.Tensor:
        """The cached keys or values (batch, heads, t, d_h) that later queries can still see,
        leaving `room` places of the window for new ones."""
        if self.window_size is None:
            return cache
        return cache[:, :, max(0, cache.shape[2] - (self.window_size - room)) :]

    @token_weights_method
    def token_weights(self, x: torch.Tensor) -> torch.Tensor:
        """W = softmax(q kᵀ / √d_h) over the keys a query sees (every earlier one, or the window): (batch, H, seq,
        seq), with y = W·v per head for v the value projection (the v of W_qkv x) and y the heads' output before
        W_o (attention dropout is not applied)."""
        q, k, _ = self._qkv(x)
        position = torch.arange(x.shape[1], device=x.device)
        seen = position[None, :] <= position[:, None]
        if self.window_size is not None:
            seen &= position[None, :] > position[:, None] - self.window_size
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        return scores.masked_fill(~seen, -math.inf).softmax(dim=-1)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, k, v = self._qkv(x)
        acc = torch.promote_types(k.dtype, torch.float32)
        state = {
            name: self._recent(t).to(acc, memory_format=torch.contiguous_format, copy=True)
            for name, t in (("k", k), ("v", v))
        }
        return self._attend(q, k, v), state

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        empty = torch.zeros(batch_size, self.num_heads, 0, self.head_dim, device=device, dtype=acc)
        return {"k": empty, "v": empty.clone()}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v = self._qkv(x_t[:, None])
        k = torch.cat([self._recent(state["k"], room=1), k.to(state["k"].dtype)], dim=2)
        v = torch.cat([self._recent(state["v"], room=1), v.to(state["v"].dtype)], dim=2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self._merge(y)[:, 0], {"k": k, "v": v}

    def state_size(self, seq_len: int) -> int:
        kept = seq_len if self.window_size is None else min(self.window_size, seq_len)
        return 2 * self.d_model * kept
