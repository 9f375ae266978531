"""The paper-figure sweeps hold exactly the grids of the reproduction notes (no training here)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from zoology.config import TrainConfig
from zoology.data.presets import based_figure2_test, based_figure2_train
from zoology.launch import load_sweep, plan
from zoology.model import LanguageModel

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"


@pytest.fixture(scope="module")
def based_fig2() -> list[TrainConfig]:
    return load_sweep(SWEEPS / "based_figure2.py")


@pytest.fixture(scope="module")
def zoology_fig2() -> list[TrainConfig]:
    return load_sweep(SWEEPS / "zoology_figure2.py")


@pytest.fixture(scope="module")
def rebased_fig1() -> list[TrainConfig]:
    return load_sweep(SWEEPS / "rebased_figure1.py")


def family(c: TrainConfig) -> str:
    return c.model.mixers[-1].name


def kwargs(c: TrainConfig) -> dict:
    return c.model.mixers[-1].kwargs


def segments(segs) -> list[tuple]:
    return [(s.input_seq_len, s.num_kv_pairs, s.num_examples, s.filler, s.vocab_size) for s in segs]


def lrs_by_model(configs: list[TrainConfig], *extra: str) -> dict:
    """{model (config without lr, seed, name): sorted lrs}, seeds expanded by `extra` fields."""
    out: dict = {}
    for c in configs:
        key = c.set({"lr": 1.0, "seed": 0, "name": "x"}).run_id
        out.setdefault(key, []).append((c.lr, *(getattr(c, e) for e in extra)))
    return {k: sorted(v) for k, v in out.items()}


def check_common(c: TrainConfig) -> None:
    """Every reference setup: 2 layers, no MLP, V = 8192, AdamW weight decay 0.1, no warmup."""
    assert (c.model.n_layers, c.model.mlp_expand, c.model.vocab_size) == (2, 0, 8192)
    assert c.weight_decay == 0.1 and c.warmup_steps == 0
    names = [m.name for m in c.model.mixers]
    if family(c) == "mamba":
        assert names == ["mamba"], c.name
    elif not c.model.position_embeddings:
        assert names == ["base_conv", family(c)] and c.model.mixers[0].kwargs == {"kernel_size": 3}, c.name


def check_names(configs: list[TrainConfig]) -> None:
    names = [c.name for c in configs]
    assert len(set(names)) == len(names)
    for c in configs:
        assert c.name.startswith(f"{family(c)}-") and f"-d{c.model.d_model}-" in c.name
        assert c.name.endswith(f"-lr{c.lr:.3g}-s{c.seed}")


def test_based_figure2_grid(based_fig2):
    assert len(based_fig2) == 4 * (9 + 4 + 8 + 9)
    check_names(based_fig2)
    train = [(64, 4, 100_000), (128, 8, 20_000), (256, 16, 20_000), (256, 32, 20_000), (256, 64, 20_000)]
    test = [(64, 4), (64, 8), (64, 16), (128, 32), (256, 64), (512, 128), (1024, 256)]
    for c in based_fig2:
        check_common(c)
        assert segments(c.data.train) == [(*row, "random", 8192) for row in train]
        assert segments(c.data.test) == [(L, N, 1000, "random", 8192) for L, N in test]
        assert c.data.train == based_figure2_train() and c.data.test == based_figure2_test()
        assert (c.data.batch_size, c.max_epochs, c.early_stopping_threshold) == (256, 32, 0.99)
        assert not c.model.position_embeddings and c.seed == 0
    assert all(v == [(1e-3,), (3.16e-3,), (1e-2,), (3.16e-2,)] for v in lrs_by_model(based_fig2).values())

    sizes = Counter((family(c), c.model.d_model, *sorted(kwargs(c).items())) for c in based_fig2 if c.lr == 1e-3)
    assert all(n == 1 for n in sizes.values())
    expected = [
        *(("based", d, ("feature_dim", f), ("num_heads", 1)) for d in (48, 64, 128) for f in (8, 16, 24)),
        *(("attention", d, ("num_heads", h)) for d in (64, 128) for h in (1, 2)),
        *(("sliding_window", 128, ("num_heads", 1), ("window_size", w)) for w in (8, 16, 32, 64, 128, 256, 512, 1024)),
        *(("mamba", d, ("d_conv", 4), ("d_state", n), ("expand", 2)) for d in (64, 128, 256) for n in (8, 16, 24)),
    ]
    assert set(sizes) == set(expected)


def test_zoology_figure2_grid(zoology_fig2):
    lengths = {64: (4, 512), 128: (8, 512), 256: (16, 256), 512: (64, 128)}
    families = {"attention", "based", "rebased", "linear_attention", "mamba"}
    assert len(zoology_fig2) == len(lengths) * 4 * len(families) * 4
    check_names(zoology_fig2)
    for c in zoology_fig2:
        check_common(c)
        (L, N, n_train, filler, _), (L_test, N_test, n_test, filler_test, _) = (
            *segments(c.data.train),
            *segments(c.data.test),
        )
        assert (L, N) == (L_test, N_test) and N == lengths[L][0] and c.data.batch_size == lengths[L][1]
        assert (n_train, n_test, filler, filler_test) == (100_000, 3_000, "zero", "zero")
        assert len(c.data.train) == len(c.data.test) == 1 and f"-L{L}-" in c.name
        assert c.max_epochs == 64 and c.model.d_model in (64, 128, 256, 512)
        if family(c) == "attention":
            assert [m.name for m in c.model.mixers] == ["attention"]
            assert kwargs(c) == {"num_heads": 1, "dropout": 0.1} and c.model.position_embeddings
        else:
            assert not c.model.position_embeddings
    assert Counter(family(c) for c in zoology_fig2) == {f: 64 for f in families}
    lrs = [(lr,) for lr in np.logspace(-4, -2, 4)]
    assert all(np.allclose(v, lrs) for v in lrs_by_model(zoology_fig2).values())


def test_rebased_figure1_grid(rebased_fig1):
    kv_pairs = {128: 16, 256: 64, 512: 128, 1024: 256, 2048: 512}
    assert len(rebased_fig1) == len(kv_pairs) * 4 * 4 * 4 * 5
    check_names(rebased_fig1)
    for c in rebased_fig1:
        check_common(c)
        [(L, N, n_train, filler, _)], [test] = segments(c.data.train), segments(c.data.test)
        assert N == kv_pairs[L] and test == (L, N, 3_000, "zero", 8192)
        assert (n_train, filler, c.data.batch_size, c.max_epochs) == (100_000, "zero", 512, 64)
        assert c.model.d_model in (64, 128, 256, 512) and not c.model.position_embeddings
        if family(c) in ("based", "rebased"):
            assert kwargs(c) == {"feature_dim": 16, "num_heads": 16}
        elif family(c) == "mamba":
            assert kwargs(c)["d_state"] == 16
        else:
            assert family(c) == "attention" and kwargs(c) == {"num_heads": 1}
    grid = [(lr, seed) for lr, seed in itertools.product((5e-4, 1e-3, 3e-3, 1e-2), range(5))]
    by_model = lrs_by_model(rebased_fig1, "seed")
    assert len(by_model) == 5 * 4 * 4 and all(v == grid for v in by_model.values())


def test_the_documented_filter_selects_based_against_rebased(rebased_fig1):
    doc = (SWEEPS / "rebased_figure1.py").read_text()
    pattern = re.search(r"--filter='([^']*s\[01\]\$)'", doc)[1]
    chosen = [p.config for p in plan(rebased_fig1, Path("unused"), pattern=pattern)]
    assert len(chosen) == 2 * 2 * 2 * 4 * 2
    assert {(family(c), c.data.train[0].input_seq_len, c.model.d_model, c.seed) for c in chosen} == set(
        itertools.product(("based", "rebased"), (512, 1024), (64, 128), (0, 1))
    )


def test_every_model_of_the_figures_builds(based_fig2, zoology_fig2, rebased_fig1):
    models = {}
    for c in [*based_fig2, *zoology_fig2, *rebased_fig1]:
        models.setdefault((c.model.model_dump_json(), c.data.max_seq_len), c)
    for c in models.values():
        with torch.device("meta"):
            model = LanguageModel(c.model, max_seq_len=c.data.max_seq_len)
        assert model.state_size(c.data.max_seq_len) > 0, c.name
