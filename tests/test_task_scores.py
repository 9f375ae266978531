"""The task score table (best over hyperparameters per setting, mean over a task's settings, one row
per family) and its heat map, on run directories with known accuracies."""

from __future__ import annotations

import numpy as np
import pytest

from zoology import analysis, papers, results
from zoology.config import TrainConfig
from zoology.data.presets import mad_setting
from zoology.errors import cli_main
from zoology.plot import main as plot_main
from zoology.runner.rundir import RunDir

SIZES = {"train_examples": 8, "test_examples": 8, "valid_examples": 8}
SETTINGS = [
    mad_setting("in_context_recall", **SIZES),
    mad_setting("in_context_recall", "V32", vocab_size=32, **SIZES),
    mad_setting("memorization", **SIZES),
]
LRS, WDS = (1e-3, 1e-2), (0.0, 0.1)


def score(family: str, setting: str, lr: float, wd: float, seed: int) -> float:
    """A known selected-epoch token accuracy for every run: the best of each grid is lr 1e-2, wd 0.1."""
    base = {"in_context_recall-base": 0.9, "in_context_recall-V32": 0.5, "memorization-base": 0.3}[setting]
    penalty = 0.2 * (lr == 1e-3) + 0.1 * (wd == 0.0) + 0.02 * seed
    return base - penalty - (0.1 if family == "based" else 0.0)


def write_result(sweep, config: TrainConfig, token_acc: float, selected: bool = True) -> None:
    run = RunDir(sweep / config.run_id)
    run.start(config.model_dump(mode="json"))
    test = config.data.test[0].build(0)
    name = test.name
    epoch = {"acc": token_acc - 0.05, "slices": {name: token_acc - 0.05}, "token_acc": token_acc, "macro_acc": 0.1}
    run.write_result(
        {
            "run_id": config.run_id,
            "name": config.name,
            "last": {**epoch, "acc": 0.0, "token_acc": 0.0, "loss": 1.0},
            "best": {**epoch, "epoch": 2},
            **({"selected": {**epoch, "epoch": 1, "loss": 1.0, "validation": {"token_acc": 0.7}}} if selected else {}),
            "slices": [{"slice": name, **test.slice, "num_examples": 8}],
            "params": 10,
            "state_size": 10,
            "epochs": 3,
            "wall_time": 1.0,
        }
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    s = tmp_path_factory.mktemp("mad")
    setup = TrainConfig.from_yaml("mad")
    for seed in (0, 1):
        for c in papers.mad_configs(setup, ["attention", "based"], SETTINGS, LRS, WDS):
            setting = c.name.split("-")[1] + "-" + c.name.split("-")[2]
            write_result(s, c.set({"seed": seed}), score(c.name.split("-")[0], setting, c.lr, c.weight_decay, seed))
    return s


def test_task_scores_take_the_best_hyperparameters_per_setting_then_the_mean_over_settings(sweep):
    df = results.load(sweep)
    assert len(df) == 2 * 2 * 3 * 4
    scores = analysis.task_scores(df)
    seed_mean = 0.01  # the mean penalty of seeds 0 and 1
    attention = {"in_context_recall": (0.9 + 0.5) / 2 - seed_mean, "memorization": 0.3 - seed_mean}
    assert list(scores.columns) == ["in_context_recall", "memorization", "mean"]
    assert list(scores.index) == ["base_conv+attention", "base_conv+based"], "sorted by mean, best first"
    for family, shift in (("base_conv+attention", 0.0), ("base_conv+based", 0.1)):
        for task, value in attention.items():
            assert scores.loc[family, task] == pytest.approx(value - shift)
        assert scores.loc[family, "mean"] == pytest.approx(np.mean(list(attention.values())) - shift)
    settings = analysis.setting_scores(df)
    best = settings[(settings["family"] == "base_conv+based") & (settings["setting"] == "in_context_recall-V32-L128")]
    assert best[["lr", "weight_decay", "runs", "train_examples"]].values.tolist() == [[1e-2, 0.1, 8, 8]]
    macro = analysis.task_scores(df, accuracy="macro")
    assert (macro.drop(columns="mean") == 0.1).all(axis=None)
    last = analysis.task_scores(df, metric="last")
    assert (last.drop(columns="mean") == 0.0).all(axis=None)


def test_scores_need_the_selected_epoch_or_say_so(tmp_path):
    setup = TrainConfig.from_yaml("mad")
    (c,) = papers.mad_configs(setup, ["attention"], SETTINGS[:1], (1e-3,), (0.0,))
    write_result(tmp_path, c, 0.5, selected=False)
    with pytest.raises(ValueError, match=r"no run has 'token_acc_selected' \(selected needs runs with data.valid\)"):
        analysis.task_scores(results.load(tmp_path))
    assert analysis.task_scores(results.load(tmp_path), metric="best").loc["base_conv+attention", "mean"] == 0.5
    with pytest.raises(ValueError, match="accuracy='top5': use one of token, macro, example"):
        analysis.task_scores(results.load(tmp_path), accuracy="top5")


def test_plot_scores_writes_a_legible_heat_map(sweep, tmp_path, capsys):
    out = tmp_path / "scores.png"
    assert plot_main([str(sweep), "--plot", "scores", "-o", str(out)]) == 0
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "in_context_recall" in printed and "0.690" in printed  # the table is printed too
    scores = analysis.task_scores(results.load(sweep))
    fig = analysis.plot_task_scores(scores, label="token accuracy")
    ax, colorbar = fig.axes
    assert colorbar.get_ylabel() == "token accuracy"
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(cells) == scores.size
    for (i, j), value in np.ndenumerate(scores.to_numpy()):
        text = cells[i, j]
        assert text.get_text() == f"{value:.2f}" and text.get_fontsize() >= 10
        assert text.get_color() == ("white" if value < 0.6 else "black"), "dark text on light cells and back"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(scores.index)
    assert cli_main(lambda: plot_main([str(sweep), "--plot", "frontier", "--metric", "selected"])) == 2
