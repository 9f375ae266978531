"""The language model around the mixers: embeddings, pre-norm residual blocks, tied (or untied) LM
head, and an optional bottleneck read-out (an encoder-decoder for the compression task)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoology import mixers
from zoology.config import ModelConfig


class SwiGLU(nn.Module):
    """W2·(silu(W1·x) ⊙ W3·x) without biases: (..., d_model) -> (..., d_model) through `width`."""

    def __init__(self, d_model: int, width: int):
        super().__init__()
        self.gate = nn.Linear(d_model, width, bias=False)
        self.up = nn.Linear(d_model, width, bias=False)
        self.down = nn.Linear(width, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def mlp(kind: str, d_model: int, width: int, eps: float) -> nn.Sequential:
    """LN then the MLP: gelu (Linear, GELU, Linear, with biases) or swiglu."""
    if kind == "swiglu":
        return nn.Sequential(nn.LayerNorm(d_model, eps=eps), SwiGLU(d_model, width))
    return nn.Sequential(
        nn.LayerNorm(d_model, eps=eps), nn.Linear(d_model, width), nn.GELU(), nn.Linear(width, d_model)
    )


def sinusoidal_positions(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """(...) integer positions -> (..., d_model) fixed embeddings: sin(p·ω_i) in the first half of the
    features and cos(p·ω_i) in the second, ω_i = 10000^(−i/(d_model/2)) (a zero last feature when
    d_model is odd)."""
    half = d_model // 2
    frequencies = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / max(half, 1))
    )
    angles = positions[..., None].float() * frequencies
    out = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(out, (0, d_model - 2 * half))


class BottleneckReadout(nn.Module):
    """Decode every output position from one vector: h (batch, d) and positions (batch, K) ->
    (batch, K, d) = 2 × [LN, Linear(d, d), GELU] applied to h + sinusoid(position)."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [nn.LayerNorm(d_model, eps=eps), nn.Linear(d_model, d_model), nn.GELU()]
        self.decode = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decode(h[:, None, :] + sinusoidal_positions(positions, h.shape[-1]).to(h.dtype))


class Block(nn.Module):
    """x + mixer(LN(x)), then x + MLP(LN(x)) when the model has an MLP (`mlp_width` > 0)."""

    def __init__(self, mixer: nn.Module, d_model: int, mlp_width: int, eps: float, mlp_kind: str = "gelu"):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.mixer = mixer
        self.mlp = mlp(mlp_kind, d_model, mlp_width, eps) if mlp_width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm(x))
        return x if self.mlp is None else x + self.mlp(x)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer.prefill(self.norm(x))
        x = x + y
        return (x if self.mlp is None else x + self.mlp(x)), state

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer.step(self.norm(x_t), state)
        x_t = x_t + y
        return (x_t if self.mlp is None else x_t + self.mlp(x_t)), state


class LanguageModel(nn.Module):
    """Token (+ optional learned position) embedding, n_layers blocks, final norm, tied head (or an
    untied `unembed`, config.tie_embeddings=False). With config.readout='bottleneck' the logits of
    every position come from the last position's hidden state through `BottleneckReadout`.

    Layer i uses config.mixers[i mod len(config.mixers)]. Besides the parallel `forward`, the model
    runs through its mixers' recurrent forms: `prefill(input_ids)` then `step(token_ids, state)`, and
    greedy `generate(prompt, n)`. The model state is {"pos": tokens seen, "layers": mixer states};
    `state_numel(state) == state_size(pos) * batch` (the position is a Python int and counts 0).
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
                config.inner_width,
                config.norm_eps,
                config.mlp,
            )
            for i in range(config.n_layers)
        )
        self.norm_f = nn.LayerNorm(d, eps=config.norm_eps)
        self.unembed = None if config.tie_embeddings else nn.Linear(d, config.vocab_size, bias=False)
        self.readout = BottleneckReadout(d, config.norm_eps) if config.readout == "bottleneck" else None
        self.apply(_init_weights)

    def embed_tokens(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(batch, seq) ids at positions start… -> (batch, seq, d_model) embeddings after dropout."""
        x = self.embed(input_ids)
        if self.pos_embed is not None:
            stop = start + input_ids.shape[1]
            if stop > self.pos_embed.num_embeddings:
                raise ValueError(
                    f"position {stop - 1} is past the learned position embeddings "
                    f"(max_seq_len={self.pos_embed.num_embeddings}): positions must be < max_seq_len"
                )
            x = x + self.pos_embed(torch.arange(start, stop, device=input_ids.device))
        return self.drop(x)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq) token ids -> (batch, seq, d_model), before the final norm."""
        x = self.embed_tokens(input_ids)
        for block in self.blocks:
            x = block(x)
        return x

    def head(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.embed.weight if self.unembed is None else self.unembed.weight
        return self.norm_f(h) @ weight.T

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab), or only at `positions` (batch, K) -> (batch, K, vocab). With the
        bottleneck read-out, every position is decoded from the hidden state at the last one."""
        h = self.hidden_states(input_ids)
        if self.readout is not None:
            if positions is None:
                positions = torch.arange(h.shape[1], device=h.device).expand(h.shape[0], -1)
            return self.head(self.readout(h[:, -1], positions))
        if positions is not None:
            h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
        return self.head(h)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict[str, Any]:
        """The state before any token; device and dtype default to the model's parameters'."""
        weight = self.embed.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        return {
            "pos": 0,
            "layers": [block.mixer.init_state(batch_size, device=device, dtype=dtype) for block in self.blocks],
        }

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Parallel pass over (batch, seq) ids: (logits at the last position (batch, vocab), state)."""
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must be (batch, seq) with seq >= 1, got {tuple(input_ids.shape)}")
        self._check_token_readout()
        x = self.embed_tokens(input_ids)
        states = []
        for block in self.blocks:
            x, state = block.prefill(x)
            states.append(state)
        return self.head(x[:, -1]), {"pos": input_ids.shape[1], "layers": states}

    def step(self, token_ids: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One token per sequence, (batch,) ids -> (logits (batch, vocab), state); `state` is consumed."""
        if token_ids.dim() != 1:
            raise ValueError(f"token_ids must be (batch,), got {tuple(token_ids.shape)}")
        self._check_token_readout()
        x = self.embed_tokens(token_ids[:, None], start=state["pos"])[:, 0]
        logits, states = self.step_layers(x, state["layers"])
        return logits, {"pos": state["pos"] + 1, "layers": states}

    def step_layers(self, x_t: torch.Tensor, layer_states: list) -> tuple[torch.Tensor, list]:
        """The part of `step` after the embedding, (batch, d_model) embedded tokens and the layers'
        states -> (logits (batch, vocab), new layer states): every block's step, the final norm and the
        head. It sees no position, so a compiled copy serves every step of a decode."""
        states = []
        for block, layer_state in zip(self.blocks, layer_states):
            x_t, layer_state = block.step(x_t, layer_state)
            states.append(layer_state)
        return self.head(x_t), states

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int) -> torch.Tensor:
        """Greedy continuation of a (batch, P) prompt by n tokens -> (batch, n), in eval mode:
        a parallel prefill of the prompt, then one recurrent step per generated token."""
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        was_training = self.training
        self.eval()
        try:
            logits, state = self.prefill(prompt)
            out = torch.empty(prompt.shape[0], n, dtype=torch.long, device=prompt.device)
            for i in range(n):
                out[:, i] = logits.argmax(-1)
                if i + 1 < n:
                    logits, state = self.step(out[:, i], state)
        finally:
            self.train(was_training)
        return out

    def _check_token_readout(self) -> None:
        if self.readout is not None:
            raise ValueError(
                "readout='bottleneck' decodes every position from the whole sequence's last state: "
                "it has no token-by-token prefill or step"
            )

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
