"""The language model around the mixers: embeddings, pre-norm residual blocks, tied LM head."""

from __future__ import annotations

import torch
from torch import nn

from zoology import mixers
from zoology.config import ModelConfig


class Block(nn.Module):
    """x + mixer(LN(x)), then x + MLP(LN(x)) when the model has an MLP."""

    def __init__(self, mixer: nn.Module, d_model: int, mlp_expand: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.mixer = mixer
        self.mlp = None
        if mlp_expand:
            self.mlp = nn.Sequential(
                nn.LayerNorm(d_model, eps=eps),
                nn.Linear(d_model, mlp_expand * d_model),
                nn.GELU(),
                nn.Linear(mlp_expand * d_model, d_model),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm(x))
        return x if self.mlp is None else x + self.mlp(x)


class LanguageModel(nn.Module):
    """Token (+ optional learned position) embedding, n_layers blocks, final norm, tied head.

    Layer i uses config.mixers[i mod len(config.mixers)].
    """

    def __init__(self, config: ModelConfig, max_seq_len: int = 0):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.pos_embed = None
        if config.position_embeddings:
            if max_seq_len < 1:
                raise ValueError("position_embeddings needs max_seq_len >= 1")
            self.pos_embed = nn.Embedding(max_seq_len, d)
        self.drop = nn.Dropout(config.embed_dropout)
        specs = config.mixers
        self.blocks = nn.ModuleList(
            Block(
                mixers.build(specs[i % len(specs)].name, d_model=d, layer_idx=i, **specs[i % len(specs)].kwargs),
                d,
                config.mlp_expand,
                config.norm_eps,
            )
            for i in range(config.n_layers)
        )
        self.norm_f = nn.LayerNorm(d, eps=config.norm_eps)
        self.apply(_init_weights)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq) token ids -> (batch, seq, d_model), before the final norm."""
        x = self.embed(input_ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed(torch.arange(input_ids.shape[1], device=input_ids.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return x

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm_f(h) @ self.embed.weight.T

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab), or only at `positions` (batch, K) -> (batch, K, vocab)."""
        h = self.hidden_states(input_ids)
        if positions is not None:
            h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
        return self.head(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_size(self, seq_len: int) -> int:
        """Recurrent state elements per sequence after `seq_len` tokens, summed over layers."""
        return sum(block.mixer.state_size(seq_len) for block in self.blocks)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Matrices decay; norms, biases, 1-D parameters and those marked _no_weight_decay do not."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False):
                decay.append(p)
            else:
                no_decay.append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for linear and embedding weights, zero biases; parameters marked _no_reinit
    (a mixer's own specially initialised ones) are left alone."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        if not getattr(module.weight, "_no_reinit", False):
            nn.init.normal_(module.weight, std=0.02)
        bias = getattr(module, "bias", None)
        if bias is not None and not getattr(bias, "_no_reinit", False):
            nn.init.zeros_(bias)
