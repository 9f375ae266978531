import pytest
from conftest import tiny_config
from pydantic import ValidationError

from zoology.config import TrainConfig
from zoology.errors import UserError
from zoology.mixers import build, names


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        tiny_config({"model.n_heads": 2})
    with pytest.raises(ValidationError, match="learning_rate"):
        tiny_config({"learning_rate": 1e-3})


def test_unknown_mixer_names_the_choices():
    with pytest.raises(ValidationError, match=r"unknown mixer 'atention'.*attention"):
        tiny_config({"model.mixers.1.name": "atention"})
    with pytest.raises(ValidationError, match="cannot import module 'no_such_pkg'"):
        tiny_config({"model.mixers.1.name": "no_such_pkg.Mixer"})


def test_bad_mixer_kwarg_fails_when_the_config_is_built():
    with pytest.raises(ValidationError, match=r"takes no argument \['nheads'\].*num_heads"):
        tiny_config({"model.mixers.1.kwargs": {"nheads": 2}})
    with pytest.raises(ValidationError, match="'d_model' is set by the model"):
        tiny_config({"model.mixers.1.kwargs": {"d_model": 2}})


def test_impossible_task_names_the_field():
    with pytest.raises(ValidationError, match="num_kv_pairs=12 too large for input_seq_len=32"):
        tiny_config({"data.train.0.num_kv_pairs": 12})
    with pytest.raises(ValidationError, match=r"data.test\[0\].vocab_size=128 exceeds model.vocab_size=64"):
        tiny_config({"data.test.0.vocab_size": 128, "data.test.0.input_seq_len": 64})


def test_run_id_is_content_not_launch_metadata():
    a = tiny_config()
    assert a.run_id == tiny_config().run_id
    assert a.set({"name": "other", "device": "cuda"}).run_id == a.run_id
    assert a.set({"lr": 3e-3}).run_id != a.run_id
    assert a.set({"lr": 1e-3}).run_id == tiny_config({"lr": 1e-3}).run_id != a.run_id


def test_yaml_preset_with_overrides(tmp_path):
    config = TrainConfig.from_yaml("attention", ["model.d_model=48", "lr=1e-2", "model.mixers.1.kwargs.num_heads=2"])
    assert config.model.d_model == 48 and config.lr == 1e-2
    assert config.model.mixers[1].kwargs == {"num_heads": 2}
    with pytest.raises(UserError, match="must look like key.path=value"):
        TrainConfig.from_yaml("attention", ["lr"])
    with pytest.raises(UserError, match="nor a preset of that name in .*attention"):
        TrainConfig.from_yaml("no_such_preset")
    with pytest.raises(UserError, match=r"attention.yaml with --set model.d_model=0: model.d_model: .* \(got 0\)"):
        TrainConfig.from_yaml("attention", ["model.d_model=0"])


def test_what_a_run_would_fail_on_fails_when_the_config_is_built():
    with pytest.raises(
        ValidationError, match=r"mixers\[1\] \(attention\): num_heads=3 must be >= 1 and divide d_model=32"
    ):
        tiny_config({"model.mixers.1.kwargs": {"num_heads": 3}})
    with pytest.raises(ValidationError, match=r"mixers\[0\] \(based\): num_heads=5"):
        tiny_config({"model.mixers.0": {"name": "based", "kwargs": {"num_heads": 5}}})
    with pytest.raises(ValidationError, match=r"schedule_layers=1 must exceed layer_idx=1"):
        tiny_config({"model.mixers.1": {"name": "leap", "kwargs": {"schedule_layers": 1}}})
    for betas in ([0.9, 1.0], [-0.1, 0.999]):
        with pytest.raises(ValidationError, match=r"betas must each be in \[0, 1\)"):
            tiny_config({"betas": betas})
    segment = tiny_config().data.test[0].model_dump()
    with pytest.raises(ValidationError, match=r"test\[0\] and test\[1\] are the same slice 'mqar-L32-N4'"):
        tiny_config({"data.test": [segment, {**segment, "num_examples": 50}]})
    with pytest.raises(ValidationError, match="'tpu' is not a device: use 'auto', 'cpu', 'cuda'"):
        tiny_config({"device": "tpu"})
    assert tiny_config({"betas": [0.0, 0.5], "device": "cuda:1"}).betas == (0.0, 0.5)


def test_registry_builds_every_named_mixer():
    for name in names():
        mixer = build(name, d_model=16, layer_idx=0)
        assert mixer.__class__.__module__.startswith("zoology.mixers.")


def test_data_cache_dir_and_test_batch_size_do_not_change_run_id(tmp_path):
    a = tiny_config()
    assert a.set({"data.cache_dir": str(tmp_path), "data.test_batch_size": 32}).run_id == a.run_id
