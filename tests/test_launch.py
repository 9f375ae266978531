import json
import textwrap

import torch
from conftest import tiny_config

from zoology import results
from zoology.launch import main
from zoology.model import LanguageModel
from zoology.runner.rundir import RESULT_FORMAT, run_dirs, write_sweep_order

SWEEP = """
from zoology.config import TrainConfig
from conftest import tiny_config

configs = [tiny_config({{"lr": lr, "max_epochs": 1}}) for lr in (1e-3, 1e-2)]
configs += [tiny_config({{"model.mixers.1.name": "{bad}", "max_epochs": 1}})] if {with_bad} else []
"""


def write_sweep(tmp_path, with_bad=False):
    path = tmp_path / "toy.py"
    path.write_text(textwrap.dedent(SWEEP.format(bad="failing_mixers.Exploding", with_bad=with_bad)))
    return path


def test_sweep_runs_then_resume_skips_finished(tmp_path, capsys):
    sweep = write_sweep(tmp_path)
    runs = tmp_path / "runs"
    assert main([str(sweep), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 finished, 2 to run" in out and "acc_last" in out
    df = results.load(runs / "toy")
    assert len(df) == 2 and set(df["config.lr"]) == {1e-3, 1e-2}
    stamps = {p: p.stat().st_mtime_ns for p in (runs / "toy").glob("*/result.json")}

    assert main([str(sweep), "--runs-dir", str(runs)]) == 0
    assert "2 runs, 2 finished, 0 to run" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in (runs / "toy").glob("*/result.json")}

    assert main([str(sweep), "--runs-dir", str(runs), "--force", "--filter", "lr0.01"]) == 0
    assert "1 runs, 0 finished, 1 to run" in capsys.readouterr().out
    changed = [p for p in stamps if p.stat().st_mtime_ns != stamps[p]]
    assert len(changed) == 1


def test_failing_run_is_recorded_and_others_go_on(tmp_path, capsys):
    sweep = write_sweep(tmp_path, with_bad=True)
    runs = tmp_path / "runs"
    assert main([str(sweep), "--runs-dir", str(runs)]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "this mixer always fails" in captured.err
    errors = list((runs / "toy").glob("*/error.txt"))
    assert len(errors) == 1 and "RuntimeError: this mixer always fails" in errors[0].read_text()
    assert not (errors[0].parent / "result.json").exists()
    assert len(results.load(runs / "toy")) == 2


def test_sweep_without_configs_is_a_clear_error(tmp_path):
    bad = tmp_path / "empty.py"
    bad.write_text("x = 1\n")
    try:
        main([str(bad), "--runs-dir", str(tmp_path)])
    except ValueError as e:
        assert "must define `configs" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def test_results_rows_have_state_params_and_slices(tmp_path):
    sweep = write_sweep(tmp_path)
    main([str(sweep), "--runs-dir", str(tmp_path / "runs")])
    df = results.load(tmp_path / "runs" / "toy")
    row = df.iloc[0]
    assert row["model"] == "base_conv+attention"
    model = LanguageModel(tiny_config({"max_epochs": 1}).model)  # both runs' model: only the lr differs
    assert row["params"] == model.num_parameters() and row["state_size"] == 32 * 2 + 2 * 32 * 32
    assert "acc_last.mqar-L32-N4" in df.columns and "acc_best.mqar-L32-N4" in df.columns
    slices = results.load_slices(tmp_path / "runs" / "toy")
    assert set(slices["input_seq_len"]) == {32} and len(slices) == 2
    result = json.loads(next((tmp_path / "runs" / "toy").glob("*/result.json")).read_text())
    assert result["format"] == RESULT_FORMAT
    assert result["threads"] == torch.get_num_threads()  # CPU results differ slightly between thread counts


def test_results_loaders_share_columns_and_keep_the_sweep_order(tmp_path):
    sweep = write_sweep(tmp_path)
    main([str(sweep), "--runs-dir", str(tmp_path / "runs")])
    sweep_dir = tmp_path / "runs" / "toy"
    df = results.load(sweep_dir)
    assert list(df.columns[:5]) == ["run_id", "name", "model", "d_model", "lr"]
    assert df["lr"].tolist() == [1e-3, 1e-2] and df["lr"].tolist() == df["config.lr"].tolist()  # sweep order
    assert (df["d_model"] == 32).all() and (df["threads"] == torch.get_num_threads()).all()
    slices = results.load_slices(sweep_dir)
    assert {"run_id", "name", "model", "d_model", "lr"} <= set(slices.columns)
    assert slices["run_id"].tolist() == df["run_id"].tolist()

    by_name = sorted(df["run_id"])
    write_sweep_order(sweep_dir, by_name[::-1])  # a launch of a sweep file listing them the other way round
    assert [r.path.name for r in run_dirs(sweep_dir)] == by_name[::-1]
    assert results.load(sweep_dir)["run_id"].tolist() == by_name[::-1]
