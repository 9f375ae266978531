"""What the frontier, slice and curve figures contain, on run directories with known accuracies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zoology import analysis, results
from zoology.config import TrainConfig
from zoology.plot import main as plot_main
from zoology.runner.rundir import RunDir

SLICES = ({"input_seq_len": 32, "num_kv_pairs": 4}, {"input_seq_len": 64, "num_kv_pairs": 8})
NAMES = ("mqar-L32-N4", "mqar-L64-N8")


def config(mixer: str, d_model: int, lr: float, seed: int = 0) -> TrainConfig:
    segments = [
        {"input_seq_len": s["input_seq_len"], "num_kv_pairs": s["num_kv_pairs"], "num_examples": 8, "vocab_size": 128}
        for s in SLICES
    ]
    return TrainConfig.model_validate(
        {
            "model": {"vocab_size": 128, "d_model": d_model, "mixers": ["base_conv", mixer]},
            "data": {"train": segments[:1], "test": segments},
            "lr": lr,
            "seed": seed,
        }
    )


def write_run(sweep, mixer, d_model, lr, state, last, best=None, seed=0):
    """A finished run as the trainer leaves it: `last`/`best` are per-slice accuracies (best at epoch 1 of 3)."""
    c = config(mixer, d_model, lr, seed)
    best = best or last
    run = RunDir(sweep / c.run_id)
    run.start(c.model_dump(mode="json"))
    epochs = [dict(zip(NAMES, (a / 2 for a in last))), dict(zip(NAMES, best)), dict(zip(NAMES, last))]
    for epoch, slices in enumerate(epochs):
        acc = float(np.mean(list(slices.values())))
        run.append_metrics(
            {
                "epoch": epoch,
                "train_loss": 3.0 - epoch,
                "valid_loss": 3.5 - epoch,
                "valid_acc": acc,
                "slices": slices,
                "lr": lr,
                "epoch_time": 1.0,
                "tokens_per_s": 1000.0,
            }
        )
    run.write_result(
        {
            "run_id": c.run_id,
            "name": c.name,
            "params": 1000 * d_model,
            "state_size": state,
            "state_seq_len": 64,
            "epochs": len(epochs),
            "stopped_early": False,
            "last": {"acc": float(np.mean(last)), "loss": 1.0, "slices": dict(zip(NAMES, last))},
            "best": {"acc": float(np.mean(best)), "epoch": 1, "slices": dict(zip(NAMES, best))},
            "slices": [
                {"slice": n, "task": "mqar", **s, "num_passes": 1, "num_examples": 8} for n, s in zip(NAMES, SLICES)
            ],
            "wall_time": 1.0,
            "train_tokens_per_s": 1000.0,
            "device": "cpu",
            "version": "test",
        }
    )
    return c.run_id


@pytest.fixture
def sweep(tmp_path):
    """attention: d16 is best at lr 1e-2, d32 at lr 1e-3 on the last epoch (1e-2 on the best epoch).
    base_conv: d16 (state 64) and d64 (state 256) are its Pareto front; d32 (state 128) is dominated."""
    s = tmp_path / "sweep"
    ids = {
        "att16_lo": write_run(s, "attention", 16, 1e-3, 2048, (0.2, 0.0)),
        "att16_hi": write_run(s, "attention", 16, 1e-2, 2048, (0.8, 0.4)),
        "att32_lo": write_run(s, "attention", 32, 1e-3, 4096, (1.0, 0.8), best=(1.0, 0.8)),
        "att32_hi": write_run(s, "attention", 32, 1e-2, 4096, (0.6, 0.2), best=(1.0, 1.0)),
        "bc16": write_run(s, "base_conv", 16, 1e-2, 64, (0.4, 0.2)),
        "bc32": write_run(s, "base_conv", 32, 1e-2, 128, (0.3, 0.1)),
        "bc64": write_run(s, "base_conv", 64, 1e-2, 256, (0.6, 0.4)),
    }
    return s, ids


def row(points, family, label):
    match = points[(points["family"] == family) & (points["model_label"] == label)]
    assert len(match) == 1, points[["family", "model_label"]]
    return match.iloc[0]


def test_frontier_has_one_point_per_model_at_its_best_lr(sweep):
    s, ids = sweep
    points = analysis.frontier_points(results.load(s))
    assert sorted(zip(points["family"], points["model_label"])) == [
        ("base_conv", "d_model=16"),
        ("base_conv", "d_model=32"),
        ("base_conv", "d_model=64"),
        ("base_conv+attention", "d_model=16"),
        ("base_conv+attention", "d_model=32"),
    ]
    att16, att32 = row(points, "base_conv+attention", "d_model=16"), row(points, "base_conv+attention", "d_model=32")
    assert att16["lr"] == 1e-2 and att16["run_ids"] == [ids["att16_hi"]]
    assert att32["lr"] == 1e-3 and att32["run_ids"] == [ids["att32_lo"]]
    assert sorted(att16["lrs"]) == [1e-3, 1e-2]
    assert att16["accuracy"] == pytest.approx(0.6)
    assert att32["accuracy"] == pytest.approx(0.9)
    assert att32["x"] == 4096


def test_best_epoch_metric_changes_the_chosen_lr(sweep):
    s, ids = sweep
    att32 = row(analysis.frontier_points(results.load(s), metric="best"), "base_conv+attention", "d_model=32")
    assert att32["lr"] == 1e-2 and att32["run_ids"] == [ids["att32_hi"]]
    assert att32["accuracy"] == pytest.approx(1.0)


def test_pareto_flags_within_each_family(sweep):
    s, _ = sweep
    points = analysis.frontier_points(results.load(s))
    flags = {(f, m): p for f, m, p in zip(points["family"], points["model_label"], points["pareto"])}
    assert flags == {
        ("base_conv", "d_model=16"): True,
        ("base_conv", "d_model=32"): False,
        ("base_conv", "d_model=64"): True,
        ("base_conv+attention", "d_model=16"): True,
        ("base_conv+attention", "d_model=32"): True,
    }


def test_slice_choice_averages_only_the_chosen_slices(sweep):
    s, ids = sweep
    df = results.load(s)
    points = analysis.frontier_points(df, slices=["mqar-L64-*"])
    assert row(points, "base_conv+attention", "d_model=16")["accuracy"] == pytest.approx(0.4)
    assert row(points, "base_conv", "d_model=64")["accuracy"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="mqar-L128.*matches no test slice.*mqar-L32-N4"):
        analysis.frontier_points(df, slices=["mqar-L128-*"])
    with pytest.raises(ValueError, match="metric='final'"):
        analysis.frontier_points(df, metric="final")


def test_seeds_are_averaged_before_choosing_the_lr(tmp_path):
    s = tmp_path / "sweep"
    lo = [write_run(s, "attention", 16, 1e-3, 2048, (a, a), seed=k) for k, a in enumerate((0.9, 0.1))]
    hi = [write_run(s, "attention", 16, 1e-2, 2048, (a, a), seed=k) for k, a in enumerate((0.6, 0.6))]
    (point,) = analysis.frontier_points(results.load(s)).itertuples()
    assert point.lr == 1e-2 and sorted(point.run_ids) == sorted(hi)
    assert point.n_seeds == 2 and point.accuracy == pytest.approx(0.6) and point.accuracy_std == pytest.approx(0.0)
    assert point.model_label == ""
    labels = {line.get_label() for line in analysis.plot_curves(analysis.load_curves(s)).axes[1].get_lines()}
    assert labels == {f"base_conv+attention-d16-lr0.01 ({run_id})" for run_id in hi} | {
        f"base_conv+attention-d16-lr0.001 ({run_id})" for run_id in lo
    }


def test_state_axis_in_bytes_multiplies_by_four(sweep):
    s, _ = sweep
    df = results.load(s)
    points = analysis.frontier_points(df, analysis.state_axis("bytes"))
    assert sorted(points["x"]) == [256, 512, 1024, 8192, 16384]
    fig = analysis.plot_frontier(df, unit="bytes")
    assert fig.axes[0].get_xlabel() == "recurrent state at L=64 (bytes per sequence at fp32)"


def test_throughput_axis_needs_its_column_and_prefers_higher(sweep):
    s, _ = sweep
    df = results.load(s)
    with pytest.raises(ValueError, match="decode_tokens_per_s.*zoology.bench throughput"):
        analysis.frontier_points(df, "throughput")
    df["decode_tokens_per_s"] = df["state_size"].map({64: 50.0, 128: 1000.0, 256: 100.0, 2048: 50.0, 4096: 40.0})
    points = analysis.frontier_points(df, "throughput")
    bc = points[points["family"] == "base_conv"].set_index("model_label")
    assert bc["pareto"].to_dict() == {"d_model=16": False, "d_model=32": True, "d_model=64": True}
    fig = analysis.plot_frontier(df, x="throughput")
    assert fig.axes[0].get_xlabel() == "decode throughput (tokens/s)"
    df["throughput_device"] = "NVIDIA H100 80GB HBM3"
    df["decode_tokens_per_s.B1.P4096"] = df["decode_tokens_per_s"]
    fig = analysis.plot_frontier(df, x=analysis.resolve_axis("throughput", column="decode_tokens_per_s.B1.P4096"))
    assert fig.axes[0].get_xlabel() == "decode throughput on NVIDIA H100 80GB HBM3 (tokens/s, batch 1, prompt 4096)"
    other = analysis.resolve_axis("throughput", column="decode_tokens_per_s.B64.P4096")
    with pytest.raises(ValueError, match="decode_tokens_per_s.B64.P4096.*related: .*'decode_tokens_per_s.B1.P4096'\\]"):
        analysis.frontier_points(df, other)


def test_runs_without_throughput_are_left_out_with_a_warning(sweep):
    s, _ = sweep
    df = results.load(s)
    df["decode_tokens_per_s"] = np.where(df["state_size"] == 128, np.nan, 10.0)
    with pytest.warns(UserWarning, match="1 run\\(s\\) have no 'decode_tokens_per_s'"):
        points = analysis.frontier_points(df, "throughput")
    assert "d_model=32" not in set(points.loc[points["family"] == "base_conv", "model_label"])


def test_frontier_figure_draws_each_family_front_as_a_line(sweep):
    s, _ = sweep
    df = results.load(s)
    fig = analysis.plot_frontier(df)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "recurrent state at L=64 (elements per sequence)"
    assert ax.get_ylabel() == "accuracy (last epoch, mean of 2 test slices)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["base_conv"].get_xdata()) == [64, 256]
    assert list(lines["base_conv"].get_ydata()) == pytest.approx([0.3, 0.5])
    assert list(lines["base_conv+attention"].get_xdata()) == [2048, 4096]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["base_conv", "base_conv+attention"]
    dominated = [line for line in ax.get_lines() if line.get_linestyle() == "None" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in dominated] == [[128]]
    one = analysis.plot_frontier(df, metric="best", slices=["mqar-L32-N4"])
    assert one.axes[0].get_ylabel() == "accuracy (best epoch, mqar-L32-N4)"


def test_slice_matrix_holds_each_models_slice_accuracy(sweep):
    s, _ = sweep
    df = results.load(s)
    matrix = analysis.slice_matrix(df)
    assert list(matrix.columns) == ["mqar-L32-N4", "mqar-L64-N8"]
    assert matrix.loc["base_conv+attention d_model=16"].tolist() == pytest.approx([0.8, 0.4])
    assert matrix.loc["base_conv+attention d_model=32"].tolist() == pytest.approx([1.0, 0.8])
    assert matrix.loc["base_conv d_model=32"].tolist() == pytest.approx([0.3, 0.1])
    fig = analysis.plot_slices(df)
    ax = fig.axes[0]
    np.testing.assert_allclose(np.ma.getdata(ax.images[0].get_array()), matrix.to_numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L32\nN4", "L64\nN8"]
    lrs = ["1e-2", "1e-2", "1e-2", "1e-2", "1e-3"]  # each model's best lr: the models' lrs differ, so rows say
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{m} lr={lr}" for m, lr in zip(matrix.index, lrs)]
    assert fig.axes[1].get_ylabel() == "accuracy (last epoch, best lr per model)"


def test_slice_matrix_leaves_untested_slices_empty(sweep):
    s, _ = sweep
    df = results.load(s)
    df.loc[df["state_size"] == 64, "acc_last.mqar-L64-N8"] = np.nan
    matrix = analysis.slice_matrix(df)
    assert np.isnan(matrix.loc["base_conv d_model=16", "mqar-L64-N8"])
    assert matrix.loc["base_conv d_model=16", "mqar-L32-N4"] == pytest.approx(0.4)


def test_curves_come_from_every_runs_metrics(sweep):
    s, ids = sweep
    curves = analysis.load_curves(s)
    assert len(curves) == 7 * 3
    run = curves[curves["run_id"] == ids["att16_hi"]].sort_values("epoch")
    assert run["valid_acc"].tolist() == pytest.approx([0.3, 0.6, 0.6])
    assert run["valid_acc.mqar-L64-N8"].tolist() == pytest.approx([0.2, 0.4, 0.4])
    runs = results.load(s).set_index("run_id")
    for run_id, rows in curves.groupby("run_id"):  # the same model and d_model as results.load's rows
        assert set(rows["model"]) == {runs.loc[run_id, "model"]}
        assert set(rows["d_model"]) == {runs.loc[run_id, "d_model"]}
    fig = analysis.plot_curves(curves, runs=[ids["att16_hi"], ids["bc16"]])
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == 4 and len(acc_ax.get_lines()) == 2
    assert {line.get_label() for line in acc_ax.get_lines()} == {
        "base_conv+attention-d16-lr0.01",
        "base_conv+base_conv-d16-lr0.01",
    }
    assert loss_ax.get_xlabel() == "epoch"
    with pytest.raises(ValueError, match="none of these run ids"):
        analysis.plot_curves(curves, runs=["nope"])


def test_pareto_mask():
    x = np.array([1.0, 2.0, 3.0, 3.0, 4.0])
    y = np.array([0.5, 0.4, 0.9, 0.9, 0.8])
    assert analysis.pareto_mask(x, y).tolist() == [True, False, True, True, False]
    assert analysis.pareto_mask(x, y, "higher").tolist() == [False, False, True, True, True]


def test_mixer_family_and_run_table(sweep):
    assert analysis.mixer_family("base_conv+base_conv") == "base_conv"
    assert analysis.mixer_family("base_conv+attention") == "base_conv+attention"
    s, _ = sweep
    table = analysis.run_table(results.load(s))
    assert len(table) == 7
    assert table["family"].tolist()[:3] == ["base_conv"] * 3
    assert table["state"].tolist()[:3] == [64, 128, 256]
    assert list(table.columns[:9]) == [
        "family", "model", "lr", "seed", "params", "state", "acc_last", "acc_best", "best_epoch"
    ]  # fmt: skip
    assert table["acc_last"].tolist()[:3] == pytest.approx([0.3, 0.2, 0.5])  # mean of the two slices
    one = analysis.run_table(results.load(s), slices=["mqar-L32-N4"])
    assert one["acc_last"].tolist()[:3] == pytest.approx([0.4, 0.3, 0.6])


def test_a_sweep_without_finished_runs_is_a_clear_error(tmp_path):
    c = config("attention", 16, 1e-3)
    RunDir(tmp_path / c.run_id).start(c.model_dump(mode="json"))
    with pytest.raises(ValueError, match="no finished runs"):
        analysis.plot_frontier(results.load(tmp_path))


def test_facets_get_their_own_fronts_and_panels(sweep):
    s, _ = sweep
    df = results.load(s)
    df["panel"] = np.where(df["state_size"] == 128, "B", "A")
    points = analysis.frontier_points(df, facet="panel")
    lone = points[points["panel"] == "B"]
    assert lone["model_label"].tolist() == ["d_model=32"] and lone["pareto"].tolist() == [True]
    fig = analysis.plot_frontier(df, facet="panel")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["panel = A", "panel = B"]
    with pytest.raises(ValueError, match="facet='nope'"):
        analysis.frontier_points(df, facet="nope")


def test_a_saved_results_table_loads_and_plots_like_its_sweep(tmp_path, sweep):
    df = results.load(sweep[0])
    table = tmp_path / "sweep.csv"
    df.to_csv(table, index=False)
    again = results.load(table)
    assert again["config.model.mixers"].tolist() == df["config.model.mixers"].tolist()
    pd.testing.assert_frame_equal(analysis.frontier_points(again), analysis.frontier_points(df), check_dtype=False)
    assert plot_main([str(table), "--metric", "best"]) == 0
    assert (tmp_path / "sweep_frontier_best.png").read_bytes().startswith(b"\x89PNG")
    assert again[["d_model", "lr"]].equals(df[["d_model", "lr"]])


def test_each_plot_setting_gets_its_own_file(sweep):
    s, _ = sweep
    for args, name in (
        ([], "frontier.png"),
        (["--metric", "best", "--unit", "bytes"], "frontier_bytes_best.png"),
        (["--slices", "mqar-L64-*"], "frontier_mqar-L64.png"),
        (["--plot", "slices"], "slices.png"),
        (["--plot", "curves"], "curves.png"),
    ):
        assert plot_main([str(s), *args]) == 0
        assert (s / name).read_bytes().startswith(b"\x89PNG"), args
    assert len(list(s.glob("*.png"))) == 5
