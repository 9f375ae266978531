"""The reference MQAR experiments of the reproduction notes as grids, each number written once.

The sweep files sweeps/based_figure2.py, sweeps/zoology_figure2.py and sweeps/rebased_figure1.py
compose these with a setup preset from configs/ (epochs, batch, weight decay, early stopping) and
the data grids of zoology.data.presets.

A `Model` starts from its family's preset in configs/, which also holds the hybrid rule:
configs/{attention,based,rebased,sliding_window,linear_attention}.yaml are [base_conv (k = 3), mixer]
cycled over 2 layers; configs/mamba.yaml is mamba in both layers (its own short conv plays that
role). A Model sets d_model, the mixers and positions; the sweep adds data, lr and seed.

Run names read `family[-L{len}]-d{d_model}[-size]-lr{lr}-s{seed}` (size: f16 feature dim, w64
window, N16 Mamba state, h2 attention heads), so `launch --filter` picks subsets with short regexes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from zoology.config import TrainConfig
from zoology.data.presets import rebased_figure1_kv_pairs, single_length


@dataclass(frozen=True)
class Model:
    """One model of a figure: its family (preset name), d_model, size label and config updates."""

    family: str
    d_model: int
    size: str
    updates: dict[str, Any]

    def run_name(self, lr: float, seed: int = 0, seq_len: int | None = None) -> str:
        """E.g. 'based-d64-f16-lr0.001-s0', or 'rebased-L512-d64-f16-lr0.0005-s3' for one length per run."""
        length = [f"L{seq_len}"] if seq_len is not None else []
        size = [self.size] if self.size else []
        return "-".join([self.family, *length, f"d{self.d_model}", *size, f"lr{lr:.3g}", f"s{seed}"])


@cache
def _preset_mixers(family: str) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in TrainConfig.from_yaml(family).model.mixers]


def model(
    family: str, d_model: int, size: str = "", short_conv: bool = True, positions: bool = False, **kwargs: Any
) -> Model:
    """configs/<family>.yaml's mixers with `kwargs` set on its last (sequence) mixer; `short_conv=False`
    keeps that mixer alone in every layer; `positions` adds learned absolute position embeddings."""
    mixers = copy.deepcopy(_preset_mixers(family))
    mixers[-1]["kwargs"] |= kwargs
    if not short_conv:
        mixers = mixers[-1:]
    updates = {"model.d_model": d_model, "model.mixers": mixers, "model.position_embeddings": positions}
    return Model(family, d_model, size, updates)


def based(d_model: int, feature_dim: int, num_heads: int = 1) -> Model:
    return model("based", d_model, f"f{feature_dim}", feature_dim=feature_dim, num_heads=num_heads)


def rebased(d_model: int, feature_dim: int, num_heads: int = 1) -> Model:
    return model("rebased", d_model, f"f{feature_dim}", feature_dim=feature_dim, num_heads=num_heads)


def attention(
    d_model: int, num_heads: int = 1, dropout: float = 0.0, positions: bool = False, short_conv: bool = True
) -> Model:
    kwargs = {"num_heads": num_heads} | ({"dropout": dropout} if dropout else {})
    return model("attention", d_model, f"h{num_heads}", short_conv=short_conv, positions=positions, **kwargs)


def sliding_window(d_model: int, window_size: int) -> Model:
    return model("sliding_window", d_model, f"w{window_size}", window_size=window_size)


def mamba(d_model: int, d_state: int) -> Model:
    return model("mamba", d_model, f"N{d_state}", d_state=d_state)


def linear_attention(d_model: int) -> Model:
    return model("linear_attention", d_model)


FEATURE_DIM = 16
"""Based/ReBased feature dimension per head where a figure fixes it (Zoology Figure 2, ReBased Figure 1)."""
MAMBA_D_STATE = 16
"""Mamba state dimension N where a figure fixes it."""
D_MODELS = (64, 128, 256, 512)
"""Model widths of Zoology Figure 2 and ReBased Figure 1."""

# Based Figure 2: accuracy against recurrent state; data, batch 256, 32 epochs, early stopping at
# 0.99 from configs/based_figure2.yaml.
BASED_FIGURE2_LRS = (1e-3, 3.16e-3, 1e-2, 3.16e-2)
BASED_FIGURE2_ATTENTION_HEADS = (1, 2)
"""The notes give attention '1–2 heads': both head counts at both widths."""


def based_figure2_models() -> list[Model]:
    """9 Based (d × f, 1 head), 4 attention (d ∈ {64, 128} × 1 and 2 heads), 8 sliding windows at d = 128,
    9 Mamba (d × N); all but Mamba hybrid with base_conv."""
    return [
        *(based(d, f) for d in (48, 64, 128) for f in (8, 16, 24)),
        *(attention(d, h) for d in (64, 128) for h in BASED_FIGURE2_ATTENTION_HEADS),
        *(sliding_window(128, w) for w in (8, 16, 32, 64, 128, 256, 512, 1024)),
        *(mamba(d, n) for d in (64, 128, 256) for n in (8, 16, 24)),
    ]


# Zoology Figure 2: accuracy against model width, one (L, N) per run; 64 epochs and zero filler
# from configs/zoology_figure2.yaml.
ZOOLOGY_FIGURE2_LRS = tuple(float(lr) for lr in np.logspace(-4, -2, 4))


def zoology_figure2_batch_size(input_seq_len: int) -> int:
    """512 for L ≤ 128, 256 at L = 256, 128 at L = 512."""
    if input_seq_len <= 128:
        return 512
    if input_seq_len <= 256:
        return 256
    if input_seq_len <= 512:
        return 128
    raise ValueError(f"input_seq_len={input_seq_len}: Zoology Figure 2 has no batch size beyond L = 512")


def zoology_figure2_data(input_seq_len: int, num_kv_pairs: int) -> dict[str, Any]:
    """Config updates for one panel: 100,000 / 3,000 examples of (L, N), zero filler, batch by L."""
    train, test = single_length(input_seq_len, num_kv_pairs)
    return {"data.train": train, "data.test": test, "data.batch_size": zoology_figure2_batch_size(input_seq_len)}


def zoology_figure2_models(d_model: int) -> list[Model]:
    """Attention alone in both layers (1 head, attention dropout 0.1, learned positions), then the
    suite's recurrent families without positions: Based and ReBased (f = 16, 1 head) and ELU+1 linear
    attention hybrid with base_conv, and Mamba (N = 16)."""
    return [
        attention(d_model, 1, dropout=0.1, positions=True, short_conv=False),
        based(d_model, FEATURE_DIM),
        rebased(d_model, FEATURE_DIM),
        linear_attention(d_model),
        mamba(d_model, MAMBA_D_STATE),
    ]


# ReBased Figure 1: Based against ReBased at long sequences, one length per run; batch 512,
# 64 epochs and zero filler from configs/rebased_figure1.yaml.
REBASED_FIGURE1_LRS = (5e-4, 1e-3, 3e-3, 1e-2)
REBASED_FIGURE1_SEEDS = (0, 1, 2, 3, 4)
REBASED_FIGURE1_HEADS = 16
"""The paper's 12 heads divide none of d ∈ {64, 128, 256, 512} (our heads split d_model: H · d_h = d).
8 and 16 are equally near; 16 keeps d_h (4 … 32) and the H·f q/k width (256) nearer the paper's
(d // 12 = 5 … 42, 192). The state, (d + H)·D per layer, barely depends on H."""


def rebased_figure1_data(input_seq_len: int) -> dict[str, Any]:
    """Config updates for one panel: 100,000 / 3,000 examples at L with N = 16 (L = 128) or L / 4."""
    train, test = single_length(input_seq_len, rebased_figure1_kv_pairs(input_seq_len))
    return {"data.train": train, "data.test": test}


def rebased_figure1_models(d_model: int) -> list[Model]:
    """Based and ReBased (f = 16, 16 heads) and attention (1 head) hybrid with base_conv; Mamba (N = 16)."""
    return [
        based(d_model, FEATURE_DIM, REBASED_FIGURE1_HEADS),
        rebased(d_model, FEATURE_DIM, REBASED_FIGURE1_HEADS),
        mamba(d_model, MAMBA_D_STATE),
        attention(d_model, 1),
    ]
