"""`python -m zoology.data show`: examples printed as the model sees them, roles marked."""

import json
import re
from pathlib import Path

import pytest

from zoology.config import TrainConfig
from zoology.data import IGNORE_INDEX, load_segment, segment_seed
from zoology.data.__main__ import main
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.data.presets import tasks_demo
from zoology.data.show import render_example, token_cells
from zoology.errors import UserError

SMALL = (
    "{task: mqar_overwrite, vocab_size: 64, input_seq_len: 32, num_kv_pairs: 4, num_overwrites: 2, num_examples: 20}"
)


def test_cells_mark_every_role():
    config = OverwriteMQARConfig(
        vocab_size=64, input_seq_len=32, num_kv_pairs=4, num_overwrites=2, num_examples=200, filler="random"
    )
    segment = config.build(seed=1)
    C = config.context_len
    lookalikes = 0
    for e in range(len(segment)):
        inputs, labels = segment.inputs[e], segment.labels[e]
        cells = token_cells(inputs, labels, C)
        keys = set(inputs[0:C:2].tolist())
        for pos, cell in enumerate(cells):
            token, label = inputs[pos].item(), labels[pos].item()
            if label != IGNORE_INDEX:
                assert cell == f"q{token}→{label}"
            elif pos < C:
                assert cell == f"{'kv'[pos % 2]}{token}"
            elif token == 0:
                assert cell == "_"
            else:
                assert cell == (f"!{token}" if token in keys else f".{token}")
                lookalikes += token in keys
    assert lookalikes > 0


def test_rows_start_with_positions_and_truncate():
    segment = OverwriteMQARConfig(
        vocab_size=64, input_seq_len=32, num_kv_pairs=4, num_overwrites=2, num_examples=5
    ).build(seed=0)
    text = render_example(segment.inputs[0], segment.labels[0], 12, columns=8)
    assert [line.split()[0] for line in text.splitlines()] == ["0", "8", "16", "24"]
    short = render_example(segment.inputs[0], segment.labels[0], 12, columns=8, max_tokens=10)
    assert short.splitlines()[-1].strip() == "… 22 more tokens"


def test_show_inline_config_prints_n_examples(capsys):
    assert main(["show", SMALL, "-n", "2", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "mqar_overwrite-L32-N4-W2  seed 4  (2 of 20)" in out
    assert out.count("example ") == 2 and "4 labelled queries" in out
    assert "num_overwrites=2" in out and "filler='random'" in out


def test_show_file_preset_and_list(tmp_path, capsys):
    path = tmp_path / "segments.json"
    path.write_text(
        json.dumps(
            [
                {"task": "ar", "vocab_size": 64, "input_seq_len": 16, "num_kv_pairs": 4, "num_examples": 3},
                {"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 3, "filler": "zero"},
            ]
        )
    )
    assert main(["show", str(path), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "[0]  ar-L16-N4" in out and "[1]  mqar-L32-N4-zero" in out and "1 labelled query" in out
    assert main(["show", "tasks-demo", "-n", "1", "--segment", "3"]) == 0
    out = capsys.readouterr().out
    assert "ar-L16-N4" in out and "mqar-" not in out


def test_show_train_config_uses_the_run_seeds(tmp_path, capsys):
    config = TrainConfig.from_yaml("attention")
    assert main(["show", "attention", "--split", "test", "-n", "1", "--columns", "1000"]) == 0
    out = capsys.readouterr().out
    seed = segment_seed(config.data.seed, "test", 0)
    assert f"test[0]  mqar-L64-N8  seed {seed}" in out and "train[" not in out
    segment = load_segment(config.data.test[0], seed)
    printed = out.strip().splitlines()[-1].split()[1:]
    assert printed == token_cells(segment.inputs[0], segment.labels[0], 16)


def test_show_errors_are_clear(capsys):
    with pytest.raises(UserError, match="(?s)data presets: .*based-fig2-test.*config presets: .*attention"):
        main(["show", "no-such-thing"])
    with pytest.raises(UserError, match="num_overwrites=5 must be at most num_kv_pairs=4"):
        main(["show", SMALL.replace("num_overwrites: 2", "num_overwrites: 5")])
    with pytest.raises(UserError, match="--segment 9"):
        main(["show", "tasks-demo", "--segment", "9"])


def test_readme_examples_are_what_the_generators_print():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Tasks") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```\n(.*?)\n```", section, flags=re.S)
    demo = tasks_demo()
    printed = []
    for i in (0, 2, 1, 3, 4):
        segment = demo[i].build(seed=2)
        printed.append(render_example(segment.inputs[0], segment.labels[0], demo[i].context_len, columns=16))
    assert blocks == printed, "regenerate the README examples: python -m zoology.data show tasks-demo -n 1 --seed 2"
