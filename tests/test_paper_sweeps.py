"""The paper-figure sweeps hold exactly the grids of the reproduction notes (no training here)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from zoology.config import TrainConfig
from zoology.data.presets import based_figure2_test, based_figure2_train
from zoology.model import LanguageModel
from zoology.runner.plan import compile_shape_key, load_sweep, plan, shapes_in_turn

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "sweeps"


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
    """Every reference setup: 2 layers (the BaseConv stack: 4), no MLP, V = 8192, AdamW weight decay 0.1,
    no warmup; mixers alone or after base_conv (k = 3)."""
    n_layers = 4 if family(c) == "base_conv_long" else 2
    assert (c.model.n_layers, c.model.mlp_expand, c.model.vocab_size) == (n_layers, 0, 8192)
    assert c.weight_decay == 0.1 and c.warmup_steps == 0
    names = [m.name for m in c.model.mixers]
    if family(c) in ("mamba", "hyena", "h3"):
        assert names == [family(c)], c.name
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
    families = {"attention", "hyena", "h3", "base_conv_long"}
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
        if family(c) == "h3":
            N = c.model.d_model // 4
            assert kwargs(c) == {"d_state": N, "head_dim": 2} and f"-N{N}-" in c.name
        elif family(c) in ("hyena", "base_conv_long"):
            assert kwargs(c) == {"max_seq_len": L}
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


ALONE = {"mamba", "mamba2", "hyena", "h3", "leap"}
"""Recall–memory families run as the mixer alone in both layers (their presets say so); the rest are hybrids."""


def test_recall_memory_grid_holds_every_registered_family_at_three_widths_and_four_lrs():
    from zoology import mixers, papers

    configs = load_sweep(SWEEPS / "recall_memory.py")
    registered = [f for f in papers.RECALL_MEMORY_FAMILIES if f in mixers.REGISTRY]
    assert {"delta_net", "gated_delta_net", "gla", "mamba2", "rwkv7", "based", "mamba"} <= set(registered)
    assert set(papers.RECALL_MEMORY_FAMILIES) - set(registered) <= {"hyena", "h3"}, "a listed family has no mixer"
    assert len(configs) == len(registered) * 3 * 4
    check_names(configs)
    setup = TrainConfig.from_yaml("based_figure2")
    widths = Counter()
    for c in configs:
        assert c.data == setup.data and (c.max_epochs, c.early_stopping_threshold, c.weight_decay) == (32, 0.99, 0.1)
        assert (c.model.n_layers, c.model.mlp_expand, c.model.vocab_size) == (2, 0, 8192)
        assert not c.model.position_embeddings
        names = [m.name for m in c.model.mixers]
        assert names == ([family(c)] if family(c) in ALONE else ["base_conv", family(c)]), c.name
        widths[family(c), c.model.d_model] += 1
    assert widths == {(f, d): 4 for f in registered for d in (64, 128, 256)}
    assert all(v == [(1e-3,), (3.16e-3,), (1e-2,), (3.16e-2,)] for v in lrs_by_model(configs).values())


def test_recall_memory_states_at_the_test_length_grow_with_width():
    """The x-axis: each family's state at L = 1024 is counted from the built model, three sizes per family."""
    from zoology import papers

    states: dict[str, list[int]] = {}
    for m in papers.recall_memory_models():
        config = TrainConfig.from_yaml("based_figure2").set(m.updates)
        with torch.device("meta"):
            model = LanguageModel(config.model, max_seq_len=config.data.max_seq_len)
        states.setdefault(m.family, []).append(model.state_size(papers.RECALL_MEMORY_TEST_LEN))
    for family_name, sizes in states.items():
        assert len(sizes) == 3 and sizes == sorted(set(sizes)), (family_name, sizes)


def test_mad_sweep_is_the_protocol_for_every_registered_family():
    from zoology import mixers
    from zoology.data.presets import MAD_TASKS

    configs = load_sweep(SWEEPS / "mad.py")
    assert len(configs) == len(mixers.names()) * 66 * 6
    # a family's mixers are its preset's (its short-convolution hybrid, if it has one), else it alone
    preset_mixers = {
        f: [
            m if isinstance(m, str) else m["name"]
            for m in yaml.safe_load((ROOT / "configs" / f"{f}.yaml").read_text())["model"]["mixers"]
        ]
        for f in mixers.names()
        if (ROOT / "configs" / f"{f}.yaml").exists()
    }
    assert len({c.name for c in configs}) == len(configs)
    grid = sorted(itertools.product((1e-4, 5e-4, 1e-3), (0.0, 0.1)))
    per_setting: dict = {}
    for c in configs:
        family, task, label = c.name.split("-")[:3]
        m = c.model
        assert (m.d_model, m.n_layers, m.mlp, m.mlp_width, m.tie_embeddings) == (128, 2, "swiglu", 352, False)
        assert not m.position_embeddings
        assert m.readout == ("bottleneck" if task == "compression" else "tokens")
        assert (c.data.batch_size, c.max_epochs, c.min_lr, c.lr_decay, c.early_stopping_threshold) == (
            128,
            200,
            1e-6,
            "cosine",
            0.999,
        )
        (train,), (valid,), (test,) = c.data.train, c.data.valid, c.data.test
        assert train.task == valid.task == test.task == task and m.vocab_size == test.vocab_size
        assert valid == test and (valid.num_examples, test.num_examples) == (1280, 1280)
        assert train.labels == ("next_token" if task.endswith("recall") else "task")
        names = [x.name for x in m.mixers]
        assert names == preset_mixers.get(family, [family]), c.name
        per_setting.setdefault((family, task, label), []).append((c.lr, c.weight_decay))
    assert all(sorted(v) == grid for v in per_setting.values())
    assert {t for _, t, _ in per_setting} == set(MAD_TASKS)
    doc = (SWEEPS / "mad.py").read_text()
    pattern = re.search(r"--filter='([^']*)'\s+the baselines", doc)[1]
    chosen = [p.config for p in plan(configs, Path("unused"), pattern=pattern)]
    assert len(chosen) == 72
    assert {(c.name.split("-")[0], c.data.test[0].task) for c in chosen} == set(
        itertools.product(("attention", "based"), MAD_TASKS)
    )
    models = {c.model.model_dump_json(): c for c in configs}
    for c in models.values():
        with torch.device("meta"):
            model = LanguageModel(c.model, max_seq_len=c.data.max_seq_len)
        assert model.state_size(c.data.max_seq_len) > 0, c.name


def test_compile_shape_key_groups_a_models_learning_rates_and_nothing_else(based_fig2):
    groups: dict[str, list[TrainConfig]] = {}
    for c in based_fig2:
        groups.setdefault(compile_shape_key(c), []).append(c)
    assert len(groups) == 30
    for members in groups.values():
        assert sorted(c.lr for c in members) == [1e-3, 3.16e-3, 1e-2, 3.16e-2]
        assert len({(c.model.model_dump_json(), c.data.model_dump_json()) for c in members}) == 1
    one = based_fig2[0]
    assert compile_shape_key(one.set({"data.train.0.num_examples": 10})) == compile_shape_key(one)
    for change in ({"data.train.0.input_seq_len": 32}, {"data.batch_size": 128}, {"precision": "fp32"}):
        assert compile_shape_key(one.set(change)) != compile_shape_key(one), change


def test_shapes_in_turn_takes_every_models_first_run_before_any_second(based_fig2, tmp_path):
    planned = plan(based_fig2, tmp_path / "sweep")
    ordered = shapes_in_turn(planned)
    assert sorted(p.config.run_id for p in ordered) == sorted(p.config.run_id for p in planned)
    keys = [compile_shape_key(p.config) for p in ordered]
    first_keys = [compile_shape_key(p.config) for p in planned if p.config.lr == 1e-3]
    assert keys[:30] == first_keys and keys[30:60] == first_keys
    for key in set(keys):
        lrs = [p.config.lr for p, k in zip(ordered, keys) if k == key]
        assert lrs == [1e-3, 3.16e-3, 1e-2, 3.16e-2]
