"""The reference MQAR experiments of the reproduction notes, and the MAD protocol, as grids, each
number written once.

The sweep files sweeps/based_figure2.py, sweeps/zoology_figure2.py, sweeps/rebased_figure1.py and
sweeps/mad.py compose these with a setup preset from configs/ (epochs, batch, weight decay, early
stopping) and the data grids of zoology.data.presets.

A `Model` starts from its family's preset in configs/, which also holds the hybrid rule:
configs/{attention,based,rebased,sliding_window,linear_attention}.yaml are [base_conv (k = 3), mixer]
cycled over 2 layers; configs/{mamba,hyena,h3}.yaml are the mixer alone in both layers (its own short
conv or shift SSM plays that role); configs/base_conv_long.yaml is [base_conv (k = 3), base_conv_long]
cycled over 4 layers (the Zoology paper's BaseConv: kernels [3, long, 3, long]). A Model sets d_model,
the layers, the mixers and positions; the sweep adds data, lr and seed.

Run names read `family[-L{len}]-d{d_model}[-size]-lr{lr}-s{seed}` (size: f16 feature dim, w64
window, N16 Mamba or H3 state, h2 attention heads), so `launch --filter` picks subsets with short regexes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from zoology import mixers
from zoology.config import PRESETS_DIR, TrainConfig, family_name
from zoology.data.presets import MadSetting, mad_setting, mad_settings, rebased_figure1_kv_pairs, single_length


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
def _preset_model(family: str) -> tuple[int, list[dict[str, Any]]]:
    """(n_layers, mixers) of configs/<family>.yaml."""
    preset = TrainConfig.from_yaml(family).model
    return preset.n_layers, [m.model_dump(mode="json") for m in preset.mixers]


def model(
    family: str, d_model: int, size: str = "", short_conv: bool = True, positions: bool = False, **kwargs: Any
) -> Model:
    """configs/<family>.yaml's layers and mixers with `kwargs` set on its last (sequence) mixer; `short_conv=False`
    keeps that mixer alone in every layer; `positions` adds learned absolute position embeddings."""
    n_layers, preset_mixers = _preset_model(family)
    mixers = copy.deepcopy(preset_mixers)
    mixers[-1]["kwargs"] |= kwargs
    if not short_conv:
        mixers = mixers[-1:]
    updates = {
        "model.d_model": d_model,
        "model.n_layers": n_layers,
        "model.mixers": mixers,
        "model.position_embeddings": positions,
    }
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


def hyena(d_model: int, max_seq_len: int) -> Model:
    return model("hyena", d_model, max_seq_len=max_seq_len)


def h3(d_model: int, d_state: int) -> Model:
    return model("h3", d_model, f"N{d_state}", d_state=d_state)


def base_conv_long(d_model: int, max_seq_len: int) -> Model:
    return model("base_conv_long", d_model, max_seq_len=max_seq_len)


FEATURE_DIM = 16
"""Based/ReBased feature dimension per head where a figure fixes it (Zoology Figure 2, ReBased Figure 1)."""
MAMBA_D_STATE = 16
"""Mamba state dimension N where a figure fixes it."""
H3_STATE_DIVISOR = 4
"""H3's N = d_model / 4, as in the recall setups H3 appears in."""
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


def zoology_figure2_models(d_model: int, input_seq_len: int) -> list[Model]:
    """Attention alone in both layers (1 head, attention dropout 0.1, learned positions), then the
    paper's gated convolutions without positions: Hyena and H3 (N = d/4) alone in both layers, and the
    BaseConv stack of 4 layers, kernels [3, long, 3, long]; the long filters are defined up to the
    panel's length (max_seq_len = input_seq_len)."""
    return [
        attention(d_model, 1, dropout=0.1, positions=True, short_conv=False),
        hyena(d_model, input_seq_len),
        h3(d_model, d_model // H3_STATE_DIVISOR),
        base_conv_long(d_model, input_seq_len),
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


# The recall–memory frontier of every family on Based Figure 2's data and schedule (configs/based_figure2.yaml):
# 2 layers, no MLP, d ∈ {64, 128, 256}, the Based Figure 2 learning rates. A family is its preset in configs/,
# which says the layout: attention, sliding window, Based, ReBased, ELU+1 linear attention, GLA, DeltaNet,
# Gated DeltaNet and RWKV-7 as [base_conv (k = 3), mixer]; Mamba, Mamba-2, Hyena, H3 and LEAP (its own window
# schedule) as the mixer alone in both layers. The x-axis is the state a model carries at L = 1024.
RECALL_MEMORY_D_MODELS = (64, 128, 256)
RECALL_MEMORY_LRS = BASED_FIGURE2_LRS
RECALL_MEMORY_TEST_LEN = 1024
RECALL_MEMORY_FAMILIES: dict[str, Callable[[int], Model]] = {
    "attention": lambda d: attention(d, 1),
    "sliding_window": lambda d: sliding_window(d, 64),
    "based": lambda d: based(d, FEATURE_DIM),
    "rebased": lambda d: rebased(d, FEATURE_DIM),
    "linear_attention": linear_attention,
    "leap": lambda d: model("leap", d),
    "gla": lambda d: model("gla", d),
    "delta_net": lambda d: model("delta_net", d),
    "gated_delta_net": lambda d: model("gated_delta_net", d),
    "rwkv7": lambda d: model("rwkv7", d),
    "mamba": lambda d: mamba(d, MAMBA_D_STATE),
    "mamba2": lambda d: model("mamba2", d, f"N{MAMBA_D_STATE}", d_state=MAMBA_D_STATE),
    "hyena": lambda d: model("hyena", d, max_seq_len=RECALL_MEMORY_TEST_LEN),
    "h3": lambda d: model("h3", d, f"N{d // 4}", d_state=d // 4),
}
"""Family -> its model at width d (one line per family). Sliding window: w = 64; Based, ReBased: f = 16, 1 head;
Mamba, Mamba-2: N = 16; H3: N = d/4 (the recall setups'); Hyena's filter spans the test length."""


def recall_memory_models() -> list[Model]:
    """Every family of RECALL_MEMORY_FAMILIES whose mixer is registered, at each width of RECALL_MEMORY_D_MODELS."""
    return [
        make(d)
        for family, make in RECALL_MEMORY_FAMILIES.items()
        if family in mixers.REGISTRY
        for d in RECALL_MEMORY_D_MODELS
    ]


# MAD (Poli et al. 2024): six synthetic tasks, each a baseline and one-factor variations (66 settings,
# zoology.data.presets.mad_settings), every setting trained at each (lr, weight decay) below; width,
# blocks, SwiGLU, untied unembedding, epochs, batch, schedule floor and early stopping in
# configs/mad.yaml.
MAD_LRS = (1e-4, 5e-4, 1e-3)
MAD_WEIGHT_DECAYS = (0.0, 0.1)


def mad_model(family: str, d_model: int, n_layers: int) -> Model:
    """A family for the MAD sweeps: configs/<family>.yaml's mixers at d_model in n_layers layers (the
    protocol's depth, whatever the preset's: mixers cycle over the layers; the short-convolution
    hybrid where the preset has one: our attention has no rotary embedding, so its positions come from
    that convolution); a family without a preset (base_conv, a dotted path) alone in every layer."""
    if (PRESETS_DIR / f"{family}.yaml").exists():
        m = model(family, d_model)
        return Model(m.family, m.d_model, m.size, m.updates | {"model.n_layers": n_layers})
    updates = {"model.d_model": d_model, "model.n_layers": n_layers, "model.mixers": [family]}
    return Model(family_name([family]), d_model, "", updates)


def mad_run_name(family: str, setting: MadSetting, lr: float, weight_decay: float) -> str:
    """E.g. 'based-in_context_recall-base-lr0.0005-wd0.1' or 'attention-noisy_recall-noise0.4-lr0.001-wd0'."""
    return f"{family}-{setting.task}-{setting.label}-lr{lr:.3g}-wd{weight_decay:g}"


def mad_configs(
    setup: TrainConfig,
    families: list[str] | None = None,
    settings: list[MadSetting] | None = None,
    lrs: tuple[float, ...] = MAD_LRS,
    weight_decays: tuple[float, ...] = MAD_WEIGHT_DECAYS,
) -> list[TrainConfig]:
    """Every family (default: every registered mixer) × setting (default: all 66) × lr × weight decay,
    from `setup` (configs/mad.yaml): the model's vocabulary is the setting's, and a task's
    model_requirements (compression: the bottleneck read-out) are set."""
    configs = []
    for family in families if families is not None else mixers.names():
        m = mad_model(family, setup.model.d_model, setup.model.n_layers)
        for setting in settings if settings is not None else mad_settings():
            segments = (setting.train, setting.valid, setting.test)
            updates = m.updates | {
                "model.vocab_size": max(s.vocab_size for s in segments),
                **{f"model.{k}": v for k, v in setting.train.model_requirements.items()},
                "data.train": [setting.train],
                "data.valid": [setting.valid],
                "data.test": [setting.test],
            }
            configs += [
                setup.set(updates | {"lr": lr, "weight_decay": wd, "name": mad_run_name(m.family, setting, lr, wd)})
                for lr in lrs
                for wd in weight_decays
            ]
    return configs


# A small MAD for a CPU (sweeps/mad_small.py): each task's baseline shrunk, three families, 2 lrs ×
# 2 weight decays, width 64, a few epochs.
MAD_SMALL_FAMILIES = ("attention", "based", "linear_attention")
MAD_SMALL_TASKS = {
    "in_context_recall": {"vocab_size": 8, "input_seq_len": 32},
    "fuzzy_recall": {"vocab_size": 9, "input_seq_len": 32},
    "noisy_recall": {"vocab_size": 24, "input_seq_len": 32},
    "selective_copying": {"vocab_size": 8, "input_seq_len": 32, "num_tokens_to_copy": 4},
    "compression": {"vocab_size": 8, "input_seq_len": 8},
    "memorization": {"vocab_size": 64},
}
"""Each task's baseline with these fields changed: vocabularies and lengths shrunk (noisy recall keeps
its 16 noise ids, fuzzy recall its key and value lengths, memorization its L = 32)."""
MAD_SMALL_SIZES = {"train_examples": 1600, "valid_examples": 256, "test_examples": 256}
"""Sequences per split (memorization keeps its 256 training sequences)."""
MAD_SMALL_UPDATES = {"model.d_model": 64, "model.mlp_width": 176, "max_epochs": 8, "data.batch_size": 32}
"""Width 64 with MAD's SwiGLU ratio (352 / 128), at most 8 epochs, batch 32."""
MAD_SMALL_LRS = (3e-3, 1e-2)
"""Above MAD's 1e-4 … 1e-3: these runs have a few hundred steps, not 20,000."""
MAD_SMALL_WEIGHT_DECAYS = (0.0, 0.1)


def mad_small_settings() -> list[MadSetting]:
    """One setting per task, named 'small'."""
    keep_train = {"train_examples": None}  # memorization: its own 256
    return [
        mad_setting(task, "small", **(MAD_SMALL_SIZES | (keep_train if task == "memorization" else {})), **fields)
        for task, fields in MAD_SMALL_TASKS.items()
    ]
