"""Sliding-window softmax attention; its recurrent form keeps only the last w keys and values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoology.mixers.attention import Attention

MIN_BLOCK = 64


class SlidingWindowAttention(Attention):
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

    @staticmethod
    def check_args(d_model, window_size, num_heads, dropout, **_) -> None:
        """Raise ValueError for constructor arguments this mixer cannot take (checked when a config is built)."""
        if window_size < 1:
            raise ValueError(f"window_size={window_size} must be >= 1")
        Attention.check_args(d_model=d_model, num_heads=num_heads, dropout=dropout)

    def __init__(
        self,
        d_model: int,
        layer_idx: int = 0,
        window_size: int = 64,
        num_heads: int = 1,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        SlidingWindowAttention.check_args(
            d_model=d_model, window_size=window_size, num_heads=num_heads, dropout=dropout
        )
        super().__init__(d_model, layer_idx=layer_idx, num_heads=num_heads, dropout=dropout, bias=bias)
        self.window_size = window_size

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Banded causal attention over (batch, heads, seq, head_dim) tensors, heads merged."""
        b, h, l, dh = q.shape
        w, p = self.window_size, (self.dropout if self.training else 0.0)
        if l <= w:
            return self._merge(F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p))
        c = max(w, MIN_BLOCK)
        if l <= c:
            i = torch.arange(l, device=q.device)
            band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - w)
            return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=band, dropout_p=p))
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
        return self._merge(y.reshape(b, h, n * c, dh)[:, :, :l])
