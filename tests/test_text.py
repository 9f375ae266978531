"""The text task: any plain text -> tokens -> held-out split -> windows with next-token labels; perplexity
per epoch, in the result, the summary, W&B rows and the DataFrame; mixed text + recall training."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config

from zoology import analysis, mixers, results
from zoology.config import TrainConfig, segment_adapter
from zoology.data.text import TextConfig
from zoology.runner.progress import summary_table
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.runner.wandb_log import history_row, summary
from zoology.training import train
from zoology.training.schedule import learning_rates

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
PROSE = (
    "It selects exactly one of the suites by evaluating the expressions one by one until one is found to "
    "be true; then that suite is executed and no other part of the statement is executed or evaluated. "
)


def text_file(tmp_path, repeats: int = 40, name: str = "prose.txt"):
    path = tmp_path / name
    path.write_text(PROSE * repeats)
    return path


def text_segment(path, split: str, L: int = 32, **fields) -> dict:
    return {"task": "text", "path": str(path), "split": split, "input_seq_len": L, **fields}


def text_config(path, updates: dict | None = None) -> TrainConfig:
    config = TrainConfig.model_validate(
        {
            "model": {"vocab_size": 256, "d_model": 32, "mixers": ["base_conv", "attention"]},
            "data": {
                "train": [text_segment(path, "train")],
                "test": [text_segment(path, "held_out")],
                "batch_size": 16,
            },
            "lr": 1e-2,
            "max_epochs": 2,
            "early_stopping_threshold": None,
            "device": "cpu",
        }
    )
    return config.set(updates) if updates else config


def test_windows_hold_the_next_token_at_every_position_and_the_held_out_part_is_the_end(tmp_path):
    path = text_file(tmp_path)
    data = path.read_bytes()
    train_part = TextConfig(path=str(path), split="train", input_seq_len=32).build(0)
    held_out = TextConfig(path=str(path), split="held_out", input_seq_len=32).build(0)
    boundary = int(len(data) * 0.9)
    assert train_part.inputs.shape == ((boundary - 1) // 32, 32)
    assert bytes(train_part.inputs.flatten().tolist()) == data[: train_part.inputs.numel()]
    assert torch.equal(train_part.labels[:, :-1], train_part.inputs[:, 1:])
    assert bytes(train_part.labels[:, -1].tolist()) == bytes(data[32 * (i + 1)] for i in range(len(train_part)))
    assert bytes(held_out.inputs[0].tolist()) == data[boundary : boundary + 32]
    assert train_part.name == "text-L32-prose.txt-train" and held_out.name == "text-L32-prose.txt-held_out"
    numbers = tmp_path / "numbers.txt"  # no window repeats another
    numbers.write_text(" ".join(str(i * 7919 % 10007) for i in range(2000)))
    every = TextConfig(path=str(numbers), split="train", input_seq_len=32).build(0).inputs.tolist()
    picked = TextConfig(path=str(numbers), split="train", input_seq_len=32, num_examples=5).build(seed=1)
    rows = [every.index(row) for row in picked.inputs.tolist()]
    assert rows == sorted(rows) and len(set(rows)) == 5 and len(every) > 100
    assert torch.equal(
        TextConfig(path=str(numbers), split="train", input_seq_len=32, num_examples=5).build(1).inputs, picked.inputs
    )


def test_a_folder_is_read_recursively_in_sorted_order_without_hidden_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("first ")
    (tmp_path / "b" / "c.txt").write_text("second ")
    (tmp_path / ".hidden").write_text("never")
    assert TextConfig(path=str(tmp_path), split="all", input_seq_len=4).read_text() == "first \nsecond "


def test_an_installed_tokenizer_function_named_by_dotted_path(tmp_path):
    path = text_file(tmp_path, repeats=2)
    config = TextConfig(
        path=str(path), split="all", input_seq_len=8, tokenizer="tests.tokenizers_for_tests.letters", vocab_size=27
    )
    segment = config.build(0)
    assert segment.inputs[0].tolist() == [9, 20, 0, 19, 5, 12, 5, 3]  # "it selec"
    with pytest.raises(ValueError, match=r"gave token ids in \[0, 25\] but vocab_size=20"):
        TextConfig(
            path=str(path), split="all", input_seq_len=8, tokenizer="tests.tokenizers_for_tests.letters", vocab_size=20
        ).build(0)
    with pytest.raises(ValueError, match="tokenizer='nowhere.encode': cannot import it"):
        TextConfig(path=str(path), split="all", input_seq_len=8, tokenizer="nowhere.encode").build(0)


def test_bad_text_input_fails_naming_the_field_or_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait ".encode("latin-1") * 20)
    short = text_file(tmp_path, repeats=1, name="short.txt")
    (tmp_path / "nothing").mkdir()
    cases = [
        (
            text_segment(tmp_path / "missing.txt", "all"),
            FileNotFoundError,
            r"data.train\[0\]: path='.*missing.txt': no such",
        ),
        (text_segment(empty, "all"), ValueError, r"data.train\[0\]: path='.*empty.txt': the text is empty"),
        (text_segment(tmp_path / "nothing", "all"), ValueError, "the folder holds no files"),
        (
            text_segment(latin, "all"),
            ValueError,
            r"latin.txt: not utf-8 text \(byte 3 is b'\\xe9'\).*encoding: latin-1",
        ),
        (text_segment(short, "train", L=512), ValueError, r"input_seq_len=512 is longer than the text: the train part"),
        (text_segment(short, "all", num_examples=99), ValueError, "num_examples=99 but the all part of short.txt has"),
    ]
    for segment, error, message in cases:
        config = text_config(short).set({"data.train": [segment], "max_epochs": 1})
        with pytest.raises(error, match=message):
            train(config)
    latin_ok = TextConfig(path=str(latin), split="all", input_seq_len=8, encoding="latin-1").build(0)
    assert "café au lait" in bytes(latin_ok.inputs.flatten().tolist()).decode(errors="ignore")
    for fields, message in (
        ({}, "exactly one of path"),
        ({"path": "x", "corpus": "python_docs"}, "exactly one of path"),
        ({"path": "  "}, "path is empty"),
        ({"path": "x", "encoding": "no-such-codec"}, "encoding='no-such-codec': not a codec"),
        ({"path": "x", "vocab_size": 100}, "byte tokens need vocab_size >= 256"),
    ):
        with pytest.raises(ValueError, match=message):
            segment_adapter.validate_python({"task": "text", "split": "all", "input_seq_len": 8, **fields})


def test_python_docs_corpus_is_real_english_that_ships_with_python():
    segment = TextConfig(corpus="python_docs", split="held_out", input_seq_len=128).build(0)
    text = bytes(segment.inputs.flatten().tolist()).decode("utf-8", errors="replace")
    assert len(segment) > 300 and " the " in text and segment.name == "text-L128-python_docs-held_out"


@pytest.mark.parametrize("mixer", mixers.names())
def test_every_mixer_learns_text_and_reports_perplexity_each_epoch(tmp_path, mixer):
    path = text_file(tmp_path)
    spec = {"name": mixer, "kwargs": {"window_size": 8}} if mixer == "sliding_window" else mixer
    config = text_config(path, {"model.mixers": ["base_conv", spec] if mixer != "mamba" else [spec], "max_epochs": 3})
    run = RunDir(tmp_path / "run")
    result = train_run(config, run)
    records = run.metrics()
    for record in records:
        assert record["perplexity"] == pytest.approx(math.exp(record["valid_loss"]), rel=1e-9)
        assert record["perplexity_slices"] == {"text-L32-prose.txt-held_out": record["perplexity"]}
    assert result["last"]["perplexity"] == records[-1]["perplexity"]
    assert records[-1]["perplexity"] < 40 < 256, records  # far below uniform over bytes: it learned the text
    row = results.result_row(result, run.config())
    assert row["perplexity_last"] == result["last"]["perplexity"]
    assert row["perplexity_last.text-L32-prose.txt-held_out"] == result["last"]["perplexity"]


def test_perplexity_reaches_the_summary_table_and_wandb_rows(tmp_path):
    path = text_file(tmp_path)
    config = text_config(path, {"max_epochs": 1})
    result = train(config)
    record = {
        "epoch": 0,
        "train_loss": 1.0,
        "valid_loss": 2.0,
        "valid_acc": 0.5,
        "slices": {"t": 0.5},
        "perplexity": 7.4,
        "perplexity_slices": {"t": 7.4},
    }
    assert history_row(record)["perplexity/t"] == 7.4 and "perplexity_slices" not in history_row(record)
    assert summary(result)["perplexity_last"] == result["last"]["perplexity"]
    from zoology.runner.plan import plan

    sweep = tmp_path / "sweep"
    (planned,) = plan([config], sweep)
    train_run(config, planned.run)
    table = summary_table([planned], {})
    assert table.loc[0, "perplexity"] == pytest.approx(planned.run.result()["last"]["perplexity"])


def test_one_model_trains_on_text_and_recall_and_plots_recall_against_perplexity(tmp_path):
    path = text_file(tmp_path)
    mqar = {"vocab_size": 256, "input_seq_len": 32, "num_kv_pairs": 4}
    sweep = tmp_path / "sweep"
    for d_model in (16, 32):
        config = text_config(path).set(
            {
                "model.d_model": d_model,
                "data.train": [text_segment(path, "train"), {**mqar, "num_examples": 1000}],
                "data.test": [text_segment(path, "held_out"), {**mqar, "num_examples": 100}],
            }
        )
        result = train_run(config, RunDir(sweep / config.run_id))
        assert set(result["last"]["slices"]) == {"text-L32-prose.txt-held_out", "mqar-L32-N4"}
        assert set(result["last"]["perplexity_slices"]) == {"text-L32-prose.txt-held_out"}
    df = results.load(sweep)
    points = analysis.frontier_points(df, "perplexity")
    by_run = df.set_index("name")
    for _, p in points.iterrows():
        assert p["accuracy"] == pytest.approx(by_run.loc[p["name"], "acc_last.mqar-L32-N4"])  # recall only
        assert p["x"] == pytest.approx(by_run.loc[p["name"], "perplexity_last"])
    out = subprocess.run(
        [sys.executable, "-m", "zoology.plot", str(sweep), "--x", "perplexity"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sweep / "frontier_perplexity.png")


def test_the_poc_schedule_is_config_and_the_text_preset_uses_it():
    lr = learning_rates(3e-3, 1000, warmup_steps=200, decay="cosine", min_lr=0.0, warmup_start=1e-5)
    assert lr(0) == pytest.approx(1e-5) and lr(200) == pytest.approx(3e-3) and lr(1000) == pytest.approx(0.0)
    assert lr(100) == pytest.approx((1e-5 + 3e-3) / 2)
    preset = TrainConfig.from_yaml("text")
    assert (preset.warmup_steps, preset.warmup_start_lr, preset.lr_decay, preset.min_lr) == (200, 1e-5, "cosine", 0.0)
    assert [s.corpus for s in [*preset.data.train, *preset.data.test]] == ["python_docs", "python_docs"]
    assert [s.split for s in [*preset.data.train, *preset.data.test]] == ["train", "held_out"]


def test_train_cli_prints_the_per_epoch_report_at_the_end(tmp_path):
    overrides = [
        "max_epochs=2",
        "model.d_model=16",
        "model.n_layers=2",
        "model.mlp_expand=0",
        "data.train.0.num_examples=48",
        "data.test.0.num_examples=16",
        "warmup_steps=2",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "zoology.train", "text", "--runs-dir", str(tmp_path), "--set", *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines.index("epoch  train loss  valid loss  valid acc  perplexity")
    (family,) = tmp_path.glob("train-*")  # zoology.train records under RUNS_DIR/train-<family>
    (run,) = family.iterdir()
    for line, record in zip(lines[header + 1 : header + 3], RunDir(run).metrics(), strict=True):
        epoch, train_loss, valid_loss, valid_acc, ppl = line.split()
        assert int(epoch) == record["epoch"] + 1
        assert float(train_loss) == pytest.approx(record["train_loss"], abs=6e-5)
        assert float(valid_loss) == pytest.approx(record["valid_loss"], abs=6e-5)
        assert float(ppl) == pytest.approx(record["perplexity"], abs=6e-4)
    assert json.loads((run / "config.json").read_text())["data"]["test"][0]["split"] == "held_out"


def test_recall_only_runs_report_no_perplexity():
    result = train(tiny_config({"max_epochs": 1}))
    assert "perplexity" not in result["last"] and "perplexity" not in result["best"]


def test_data_show_prints_text_windows_as_text(tmp_path, capsys):
    from zoology.data.__main__ import main as data_main

    path = text_file(tmp_path, repeats=2)
    assert data_main(["show", json.dumps(text_segment(path, "all", L=40)), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "== text-L40-prose.txt  seed 0  (1 of " in out
    assert f"       {PROSE[:40]}" in out.splitlines()
