import contextlib
import json

import broken_recurrence
import pytest
import torch

from zoology import results
from zoology.bench import throughput
from zoology.config import ModelConfig, TrainConfig
from zoology.model import LanguageModel
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run

TINY = dict(batch_sizes=(2,), contexts=(8,), decode_steps=2, repeats=1, warmup=0, device="cpu")


def dotted(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def tiny_train_config(mixers: list, **updates) -> TrainConfig:
    segment = {"vocab_size": 32, "input_seq_len": 16, "num_kv_pairs": 2}
    return TrainConfig.model_validate(
        {
            "model": {"vocab_size": 32, "d_model": 16, "mixers": mixers},
            "data": {
                "train": [{**segment, "num_examples": 64}],
                "test": [{**segment, "num_examples": 16}],
                "batch_size": 32,
            },
            "max_epochs": 1,
            "device": "cpu",
            **updates,
        }
    )


@pytest.mark.parametrize(
    "broken, message",
    [
        (broken_recurrence.ForgetfulStep, "disagrees with the parallel form"),
        (broken_recurrence.MisreportedState, "state_size"),
    ],
)
def test_refuses_a_mixer_whose_recurrent_form_is_wrong(broken, message):
    config = ModelConfig(vocab_size=32, d_model=16, mixers=["base_conv", dotted(broken)])
    with pytest.raises(throughput.RecurrenceMismatch, match=message) as info:
        throughput.measure(config, throughput.Settings(**TINY))
    assert "layer 1" in str(info.value) and broken.__name__ in str(info.value)


def test_accepts_a_correct_custom_mixer():
    config = ModelConfig(vocab_size=32, d_model=16, mixers=["base_conv", dotted(broken_recurrence.PrefixMean)])
    entry = throughput.measure(config, throughput.Settings(**TINY), log=lambda _: None)
    (point,) = entry["points"]
    tokens = TINY["batch_sizes"][0] * TINY["decode_steps"]  # every sequence's timed greedy steps
    assert point["decode_tokens_per_s"] == pytest.approx(tokens / point["decode_s"])
    prompt = TINY["batch_sizes"][0] * TINY["contexts"][0]
    assert point["prefill_tokens_per_s"] == pytest.approx(prompt / point["prefill_s"])


def test_command_refuses_and_exits_nonzero(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(json.dumps(tiny_train_config(["base_conv", dotted(broken_recurrence.ForgetfulStep)]).model_dump()))
    code = throughput.main(
        [
            str(path),
            "-B",
            "2",
            "-P",
            "8",
            "--decode-steps",
            "1",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 1
    assert "REFUSED" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("throughput.json"))


def test_attention_state_and_step_work_grow_with_context_base_conv_do_not():
    settings = throughput.Settings(**{**TINY, "contexts": (8, 32)})
    grown = {}
    for mixer in ("attention", "base_conv"):
        config = ModelConfig(vocab_size=32, d_model=16, n_layers=2, mixers=[mixer])
        points = throughput.measure(config, settings, log=lambda _: None)["points"]
        assert [p["context"] for p in points] == [8, 32]
        model = LanguageModel(config)
        assert [p["state_elements_per_seq"] for p in points] == [model.state_size(8), model.state_size(32)]
        grown[mixer] = [(p["state_elements_per_seq"], p["mixer_step_reads_per_token"]) for p in points]
    (state8, read8), (state32, read32) = grown["attention"]
    assert state32 == 4 * state8 == 4 * (2 * 2 * 16 * 8)
    assert read32 - read8 >= 2 * 2 * 16 * (32 - 8)
    (state8, read8), (state32, read32) = grown["base_conv"]
    assert state32 == state8 and read32 == read8



@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_decode_floor_is_the_weights_looked_up_rows_and_state_and_each_point_says_its_multiple(tied):
    settings = throughput.Settings(**{**TINY, "batch_sizes": (2, 4), "contexts": (8, 16)})
    config = ModelConfig(vocab_size=1000, d_model=16, n_layers=2, mixers=["attention"], tie_embeddings=tied)
    entry = throughput.measure(config, settings, log=lambda _: None)
    model = LanguageModel(config)
    table = model.embed.weight.numel()
    for p in entry["points"]:
        state = 2 * 2 * 16 * p["context"] * p["batch_size"]  # K and V of both layers, float32
        rows = table if tied else p["batch_size"] * 16  # the untied head reads the whole unembedding
        assert p["decode_floor_bytes"] == 4 * (sum(q.numel() for q in model.parameters()) - table + rows + state)
        step_s, floor_s = p["decode_s"] / settings.decode_steps, p["decode_floor_bytes"] / entry["copy_bytes_per_s"]
        assert p["decode_floor_s"] == pytest.approx(floor_s) and p["decode_x_floor"] == pytest.approx(step_s / floor_s)

def test_sweep_results_written_per_device_and_joined_by_load(tmp_path):
    sweep = tmp_path / "sweep"
    configs = [tiny_train_config(["base_conv"], lr=lr) for lr in (1e-3, 3e-3)]
    for c in configs:
        train_run(c, RunDir(sweep / c.run_id))
    args = [
        "--sweep",
        str(sweep),
        "-B",
        "2,64",
        "-P",
        "8,1024",
        "--decode-steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
    ]
    assert throughput.main(args) == 0

    for c in configs:
        data = json.loads((sweep / c.run_id / "throughput.json").read_text())
        ((device, by_dtype),) = data["results"].items()
        assert device.startswith("CPU") and set(by_dtype) == {"float32"}
        assert len(by_dtype["float32"]["points"]) == 4

    assert throughput.main([*args[:4], "-P", "16"] + args[6:]) == 0
    points = json.loads((sweep / configs[0].run_id / "throughput.json").read_text())["results"][device]["float32"]
    assert sorted((p["batch_size"], p["context"]) for p in points["points"]) == [
        (2, 8),
        (2, 16),
        (2, 1024),
        (64, 8),
        (64, 16),
        (64, 1024),
    ]

    frame = results.load(sweep)
    assert len(frame) == 2 and (frame["throughput_device"] == device).all()
    ref = results.THROUGHPUT_REFERENCE
    assert (frame["decode_tokens_per_s"] == frame[f"decode_tokens_per_s.B{ref['batch_size']}.P{ref['context']}"]).all()
    for _, row in frame.iterrows():  # each column is the value its run's throughput.json holds
        saved = json.loads((sweep / row["run_id"] / "throughput.json").read_text())["results"][device]["float32"]
        at = {(p["batch_size"], p["context"]): p for p in saved["points"]}
        assert row["decode_tokens_per_s.B2.P16"] == at[2, 16]["decode_tokens_per_s"]
        assert row["prefill_tokens_per_s"] == at[ref["batch_size"], ref["context"]]["prefill_tokens_per_s"]
    assert "decode_tokens_per_s" in results.load(sweep, throughput_device="cpu")
    assert results.load(sweep, throughput_device="no such device").filter(regex="^(prefill|decode)_|^throughput_").empty


def test_a_config_trained_and_measured_alone_lands_in_one_directory_apart_from_sweeps(tmp_path, capsys):
    """zoology.train and bench throughput CONFIG record a config in RUNS_DIR/train-<family>/<run id>,
    whatever preset it came from, and say so; results.load joins the two."""
    from zoology import train

    config = tiny_train_config(["base_conv", "attention"], name="attention")
    path = tmp_path / "attention.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    runs = tmp_path / "runs"
    assert train.main([str(path), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    run = runs / "train-base_conv+attention" / config.run_id
    assert f"results in {run}" in out and "(1 epoch)" in out
    mine = config.set({"model.mixers.1.name": dotted(broken_recurrence.PrefixMean), "name": "attention"})
    assert train.main([str(path), "--set", f"model.mixers.1.name={dotted(broken_recurrence.PrefixMean)}",
                       "--runs-dir", str(runs)]) == 0  # fmt: skip
    assert (runs / "train-base_conv+PrefixMean" / mine.run_id / "result.json").exists()  # not beside attention's
    assert len(results.load(runs / "train-base_conv+attention")) == 1

    args = [str(path), "-B", "2", "-P", "8", "--decode-steps", "1", "--repeats", "1", "--warmup", "0"]
    assert throughput.main([*args, "--device", "cpu", "--runs-dir", str(runs)]) == 0
    assert str(run / "throughput.json") in capsys.readouterr().out
    df = results.load(runs / "train-base_conv+attention")
    assert df["decode_tokens_per_s"].iloc[0] == df["decode_tokens_per_s.B2.P8"].iloc[0]
    assert (df["throughput_batch_size"] == 2).all() and (df["throughput_context"] == 8).all()  # nearest 64 x 1024


def test_a_sweep_directory_given_as_a_config_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        throughput.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"use --sweep {tmp_path}" in capsys.readouterr().err


def test_contexts_past_a_mixers_max_seq_len_are_error_points_the_rest_measured():
    """Hyena's filter ends at max_seq_len = 160: a 160-token prompt fits, its decode steps do not."""
    settings = throughput.Settings(**{**TINY, "contexts": (8, 160)})
    config = ModelConfig(vocab_size=32, d_model=16, mixers=[{"name": "hyena", "kwargs": {"max_seq_len": 160}}])
    short, long = throughput.measure(config, settings, log=lambda _: None)["points"]
    assert short["decode_tokens_per_s"] == pytest.approx(2 * settings.decode_steps / short["decode_s"])
    assert short["state_elements_per_seq"] == LanguageModel(config).state_size(8)
    assert long["context"] == 160 and "too long" in long["error"] and "max_seq_len=160" in long["error"]


COMPILED = {**TINY, "compile_decode": True}


@pytest.mark.parametrize("mixer", ["based", "linear_attention"])
def test_a_compiled_decode_is_timed_as_the_fastest_mode_and_computes_the_plain_step(mixer):
    config = ModelConfig(vocab_size=64, d_model=16, mixers=[mixer])
    settings = throughput.Settings(**COMPILED)
    entry = throughput.measure(config, settings, log=lambda _: None)
    (point,) = entry["points"]
    assert entry["compile_decode"] is True
    assert not {"compiled_decode_error", "compiled_decode_skipped"} & set(point)
    tokens = TINY["batch_sizes"][0] * TINY["decode_steps"]
    assert point["decode_compiled_tokens_per_s"] == pytest.approx(tokens / point["decode_compiled_s"])
    seconds = {"eager": tokens / point["decode_eager_tokens_per_s"], "compiled": point["decode_compiled_s"]}
    assert point["decode_mode"] == min(seconds, key=seconds.get)
    assert point["decode_s"] == pytest.approx(seconds[point["decode_mode"]])

    model = throughput.build_model(config, settings, torch.device("cpu"))
    ids = torch.randint(64, (3, 8), generator=torch.Generator().manual_seed(1))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        logits, state = model.prefill(ids)
        token = logits.argmax(-1)
        plain = throughput.decode_logits(model.step, token, throughput._clone(state), 4, contextlib.nullcontext)
        step = throughput.compiled_step(model)
        compiled = throughput.decode_logits(step, token, state, 4, contextlib.nullcontext)
    assert compiled.shape == (4, 3, 64)
    torch.testing.assert_close(compiled, plain)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs + 1  # one graph for every position


def test_a_state_that_grows_is_not_compiled_and_the_point_says_why():
    config = ModelConfig(vocab_size=64, d_model=16, mixers=["base_conv", "attention"])
    (point,) = throughput.measure(config, throughput.Settings(**COMPILED), log=lambda _: None)["points"]
    assert point["compiled_decode_skipped"] == "state grows"
    assert point["decode_mode"] == "eager" and not [k for k in point if k.startswith("decode_compiled")]
    tokens = TINY["batch_sizes"][0] * TINY["decode_steps"]
    assert point["decode_tokens_per_s"] == pytest.approx(point["decode_eager_tokens_per_s"])
    assert point["decode_s"] == pytest.approx(tokens / point["decode_eager_tokens_per_s"])


def test_compile_decode_flag_is_recorded_in_throughput_json_and_its_points_load(tmp_path):
    path = tmp_path / "based.yaml"
    path.write_text(json.dumps(tiny_train_config(["based"]).model_dump(mode="json")))
    runs = tmp_path / "runs"
    args = [str(path), "-B", "2", "-P", "8", "--decode-steps", "2", "--repeats", "1", "--warmup", "0"]
    assert throughput.main([*args, "--device", "cpu", "--runs-dir", str(runs), "--compile-decode"]) == 0
    (saved,) = runs.rglob("throughput.json")
    ((device, by_dtype),) = json.loads(saved.read_text())["results"].items()
    entry = by_dtype["float32"]
    assert entry["compile_decode"] is True
    (point,) = entry["points"]
    assert point["decode_compiled_tokens_per_s"] == pytest.approx(2 * 2 / point["decode_compiled_s"])
    columns = results.throughput_columns(RunDir(saved.parent))
    assert columns["throughput_device"] == device
    assert columns["decode_tokens_per_s"] == point["decode_tokens_per_s"] == columns["decode_tokens_per_s.B2.P8"]
    assert columns["decode_x_floor"] == point["decode_x_floor"]
