"""Sliding-window softmax attention; its recurrent form keeps only the last w keys and values."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_BLOCK = 64


class SlidingWindowAttention(nn.Module):
    """y = W_o · softmax(q kᵀ / √d_h over the window) v per head, with [q; k; v] = W_qkv x.

    Window convention: query t sees keys t−w+1 … t, i.e. w keys with itself included (w = 1 sees
    only itself). Shapes: x (batch, seq, d_model) -> (batch, seq, d_model). State after t tokens:
    the last min(w, t) keys and values, oldest first, 2·d_model·min(w, t) elements per sequence
    (the buffer grows until it holds w tokens, then drops the oldest on every step), in float32
    (float64 for float64 inputs), also under bf16 autocast.

    The parallel form splits the sequence into blocks of c = max(w, 64) queries; each block attends
    to its own and the previous block's keys under a fixed banded mask, so time and memory grow
    like l·c, not l².
    """

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        window_size: int = 64,
        num_heads: int = 1,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size={window_size} must be >= 1")
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.d_model, self.layer_idx = d_model, layer_idx
        self.window_size = window_size
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
        """Banded causal attention over (batch, heads, seq, head_dim) tensors."""
        b, h, l, dh = q.shape
        w, p = self.window_size, (self.dropout if self.training else 0.0)
        if l <= w:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        c = max(w, MIN_BLOCK)
        if l <= c:
            i = torch.arange(l, device=q.device)
            band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - w)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=band, dropout_p=p)
        n = -(-l // c)
        q, k, v = (F.pad(t, (0, 0, 0, n * c - l)).view(b, h, n, c, dh) for t in (q, k, v))
        k2, v2 = (torch.cat([F.pad(t, (0, 0, 0, 0, 1, 0))[:, :, :n], t], dim=3) for t in (k, v))
        query = torch.arange(c, device=q.device)[:, None] + c
        key = torch.arange(2 * c, device=q.device)[None, :]
        block = torch.arange(n, device=q.device)[:, None, None]
        mask = (key <= query) & (key > query - w) & ((block > 0) | (key >= c))
        y = F.scaled_dot_product_attention(
            q.reshape(b, h * n, c, dh),
            k2.reshape(b, h * n, 2 * c, dh),
            v2.reshape(b, h * n, 2 * c, dh),
            attn_mask=mask.repeat(h, 1, 1),
            dropout_p=p,
        )
        return y.reshape(b, h, n * c, dh)[:, :, :l]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._merge(self._attend(*self._qkv(x)))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, k, v = self._qkv(x)
        keep = slice(max(0, x.shape[1] - self.window_size), None)
        acc = torch.promote_types(k.dtype, torch.float32)
        state = {"k": k[:, :, keep].to(acc, copy=True), "v": v[:, :, keep].to(acc, copy=True)}
        return self._merge(self._attend(q, k, v)), state

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        acc = torch.promote_types(dtype or torch.get_default_dtype(), torch.float32)
        empty = torch.zeros(batch_size, self.num_heads, 0, self.head_dim, device=device, dtype=acc)
        return {"k": empty, "v": empty.clone()}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]):
        q, k, v = self._qkv(x_t[:, None])
        keep = slice(max(0, state["k"].shape[2] - (self.window_size - 1)), None)
        k = torch.cat([state["k"][:, :, keep], k.to(state["k"].dtype)], dim=2)
        v = torch.cat([state["v"][:, :, keep], v.to(state["v"].dtype)], dim=2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self._merge(y)[:, 0], {"k": k, "v": v}

    def state_size(self, seq_len: int) -> int:
        return 2 * self.d_model * min(self.window_size, seq_len)
