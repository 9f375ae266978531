"""Trained weights kept in the run directory and rebuilt by zoology.results.load_model."""

import pytest
import torch
from conftest import tiny_config

from zoology.results import load_model
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.training.evaluation import evaluate
from zoology.training.loop import load_segments


def test_a_finished_run_keeps_final_and_best_weights_that_reproduce_its_result(tmp_path):
    config = tiny_config({"max_epochs": 3, "early_stopping_threshold": None, "keep_best_weights": True, "lr": 3e-2})
    run = RunDir(tmp_path / "run")
    result = train_run(config, run)
    assert config.run_id == tiny_config({"max_epochs": 3, "early_stopping_threshold": None, "lr": 3e-2}).run_id
    segments = load_segments(config, "test", torch.device("cpu"))
    for which, expected in (("final", result["last"]), ("best", result["best"])):
        model = load_model(run.path, which)
        assert not model.training
        got = evaluate(model, segments, config.data.test_batch_size)
        assert got["acc"] == pytest.approx(expected["acc"], abs=1e-9), which
        assert got["slices"] == pytest.approx(expected["slices"], abs=1e-9), which
    _, metadata = run.weights("final")
    assert metadata["epoch"] == str(result["epochs"] - 1)
    _, metadata = run.weights("best")
    assert metadata["epoch"] == str(result["best"]["epoch"])


def test_weights_that_do_not_match_their_config_are_refused_naming_file_and_tensor(tmp_path):
    config = tiny_config({"max_epochs": 1})
    run = RunDir(tmp_path / "run")
    train_run(config, run)
    other = tiny_config({"max_epochs": 1, "model.d_model": 16})
    from zoology.model import LanguageModel

    run.write_weights("final", 0, LanguageModel(other.model).state_dict())
    with pytest.raises(ValueError, match=r"model\.safetensors does not match .*config\.json.*d_model=32") as error:
        load_model(run.path)
    assert "embed.weight is (64, 16) in the file but (64, 32) in the model" in str(error.value)
    state = {**LanguageModel(config.model).state_dict(), "extra.weight": torch.zeros(2)}
    state.pop("norm_f.weight")
    run.write_weights("final", 0, state)
    with pytest.raises(ValueError, match="missing norm_f.weight; unexpected extra.weight"):
        load_model(run.path)


def test_missing_or_damaged_weights_are_clear_errors(tmp_path):
    config = tiny_config({"max_epochs": 1})
    run = RunDir(tmp_path / "run")
    train_run(config, run)
    with pytest.raises(FileNotFoundError, match="model_best.safetensors: no best weights.*keep_best_weights"):
        load_model(run.path, "best")
    run.weights_path("final").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        load_model(run.path)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_model(tmp_path / "nowhere")


def test_a_fresh_start_clears_weights_an_earlier_attempt_left(tmp_path):
    config = tiny_config({"max_epochs": 1, "keep_best_weights": True})
    run = RunDir(tmp_path / "run")
    train_run(config, run)
    assert run.weights_path("final").exists() and run.weights_path("best").exists()
    run.start(config.model_dump(mode="json"))
    assert not run.weights_path("final").exists() and not run.weights_path("best").exists()
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []
