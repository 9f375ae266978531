"""Length and kv extrapolation: presets shared by sweeps, and per-slice results in long format."""

import pandas as pd
import pytest

from zoology import results
from zoology.config import TrainConfig
from zoology.data.presets import (
    PRESETS,
    based_figure2_grid,
    based_figure2_test,
    based_figure2_train,
    mqar_grid,
)
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run


def test_based_figure2_presets_match_the_paper_setup():
    train_set, test_set = based_figure2_train(), based_figure2_test()
    assert [(s.input_seq_len, s.num_kv_pairs, s.num_examples) for s in train_set] == list(based_figure2_grid()[0])
    assert sum(s.num_examples for s in train_set) == 180_000
    assert [(s.input_seq_len, s.num_kv_pairs) for s in test_set] == list(based_figure2_grid()[1])
    assert {s.num_examples for s in test_set} == {1000}
    assert {(s.vocab_size, s.filler, s.num_passes) for s in [*train_set, *test_set]} == {(8192, "random", 1)}
    assert max(s.input_seq_len for s in test_set) == 4 * max(s.input_seq_len for s in train_set) == 1024
    assert max(s.num_kv_pairs for s in test_set) == 4 * max(s.num_kv_pairs for s in train_set) == 256
    assert [s.input_seq_len for s in based_figure2_test(max_seq_len=256)] == [64, 64, 64, 128, 256]
    assert {s.filler for s in based_figure2_test(filler="zero")} == {"zero"}
    assert set(PRESETS) >= {"based-fig2-train", "based-fig2-test"}
    with pytest.raises(ValueError, match="max_seq_len=32 leaves no test slice"):
        based_figure2_test(max_seq_len=32)
    with pytest.raises(ValueError, match=r"grid row \(64, 4\) has no num_examples"):
        mqar_grid(((64, 4),))


def test_presets_plug_into_a_train_config():
    base = TrainConfig.from_yaml("attention").set({"model.vocab_size": 8192})
    config = base.set({"data.train": based_figure2_train(), "data.test": based_figure2_test()})
    again = base.set({"data.train": based_figure2_train(), "data.test": based_figure2_test()})
    assert config.run_id == again.run_id and config.data.max_seq_len == 1024
    assert len(config.data.test) == 7


def test_slices_table_shows_where_recall_is_tested_beyond_training(tmp_path):
    small = {"vocab_size": 64, "num_examples": 64}
    config = TrainConfig.model_validate(
        {
            "model": {"vocab_size": 64, "d_model": 16, "mixers": ["base_conv", "attention"]},
            "data": {
                "train": [{"input_seq_len": 32, "num_kv_pairs": 4, **small}],
                "test": [
                    {"input_seq_len": 32, "num_kv_pairs": 4, **small},
                    {"input_seq_len": 32, "num_kv_pairs": 6, **small},
                    {"input_seq_len": 48, "num_kv_pairs": 4, "filler": "zero", **small},
                    {"task": "ar", "input_seq_len": 48, "num_kv_pairs": 8, **small},
                    {"task": "mqar_overwrite", "input_seq_len": 48, "num_kv_pairs": 6, "num_overwrites": 2, **small},
                ],
                "batch_size": 32,
            },
            "max_epochs": 1,
            "device": "cpu",
        }
    )
    train_run(config, RunDir(tmp_path / "sweep" / config.run_id))
    table = results.load_slices(tmp_path / "sweep")
    assert table["slice"].tolist() == [
        "mqar-L32-N4",
        "mqar-L32-N6",
        "mqar-L48-N4-zero",
        "ar-L48-N8",
        "mqar_overwrite-L48-N6-W2",
    ]
    assert table["task"].tolist() == ["mqar", "mqar", "mqar", "ar", "mqar_overwrite"]
    assert table["input_seq_len"].tolist() == [32, 32, 48, 48, 48]
    assert table["num_kv_pairs"].tolist() == [4, 6, 4, 8, 6]
    assert table["num_passes"].tolist()[:3] == [1, 1, 1] and table["num_passes"].isna().tolist()[3:] == [True, True]
    assert table["num_overwrites"].isna().tolist() == [True] * 4 + [False]
    assert table["filler"].tolist() == ["random", "random", "zero", "random", "random"]
    assert table["beyond_train_len"].tolist() == [False, False, True, True, True]
    assert table["beyond_train_kv"].tolist() == [False, True, False, True, True]
    assert (table["train_max_seq_len"] == 32).all() and (table["train_max_kv_pairs"] == 4).all()
    assert str(table["input_seq_len"].dtype) == "Int64" and str(table["num_passes"].dtype) == "Int64"
    assert table["acc_last"].between(0, 1).all() and table["acc_best"].between(0, 1).all()
    assert set(table["model"]) == {"base_conv+attention"} and (table["state_size"] > 0).all()
    grid = table.pivot_table(index="input_seq_len", columns="num_kv_pairs", values="acc_last", aggfunc="mean")
    assert isinstance(grid, pd.DataFrame) and grid.shape == (2, 3)
