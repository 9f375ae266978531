"""What a query used: `zoology.analysis.retrieval_mass` and `python -m zoology.explain` on trained runs."""

import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from matplotlib.image import imread

from zoology.analysis import retrieval_mass
from zoology.analysis.retrieval import MASS_COLUMNS, answer_masks, query_masses
from zoology.data import IGNORE_INDEX
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.model import LanguageModel
from zoology.results import load_model
from zoology.runner.rundir import RunDir
from zoology.runner.sequential import train_run
from zoology.training.loop import load_segments

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAINED = {"max_epochs": 4, "data.train.0.num_examples": 2000, "lr": 2e-2, "early_stopping_threshold": None}


def explain_command(*args) -> list[str]:
    return [sys.executable, "-m", "zoology.explain", *map(str, args)]


def explain(*args) -> subprocess.CompletedProcess:
    return subprocess.run(explain_command(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)


def explain_all(cases: list[list]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of `python -m zoology.explain` with each case's arguments, run side by side."""
    procs = [
        subprocess.Popen(explain_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for args in cases
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    return [(proc.returncode, *output) for proc, output in zip(procs, outputs)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A [base_conv, attention] model trained on the tiny MQAR (L = 32, N = 4) until it recalls (~0.99)."""
    config = tiny_config(TRAINED)
    run = RunDir(tmp_path_factory.mktemp("explain") / config.run_id)
    train_run(config, run)
    return run.path


def saved_untrained(path: Path, mixers: list) -> Path:
    """A run directory of a model built from its config and saved, untrained, by the runner's own writer."""
    config = tiny_config({"model.mixers": mixers, "data.test.0.num_examples": 20})
    run = RunDir(path)
    run.start(config.model_dump(mode="json"))
    torch.manual_seed(0)
    run.write_weights("final", 0, LanguageModel(config.model, config.data.max_seq_len).state_dict())
    return run.path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, which must be a valid one."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_masses_of_signed_weights_are_shares_of_abs_w_per_row():
    # one MQAR example: k5 v40 k7 v41 | queries of key 7 at 4 and of key 5 at 6
    inputs = torch.tensor([[5, 40, 7, 41, 7, 9, 5, 3]])
    labels = torch.full_like(inputs, IGNORE_INDEX)
    labels[0, 4], labels[0, 6] = 41, 40
    W = torch.zeros(1, 2, 8, 8)
    W[0, 0, 4, :5] = torch.tensor([1.0, -1.0, 2.0, -4.0, 0.0])  # |W| row sum 8: key 7 at 2 (2/8), value at 3 (4/8)
    W[0, 1, 4, :5] = torch.tensor([0.0, 0.0, 0.0, 3.0, -1.0])  # value 3/4, key 0
    W[0, :, 6, 1] = -2.0  # a row all on key 5's value, negative
    masses = query_masses(W, inputs, labels, context_len=4)
    assert masses.flatten().tolist() == pytest.approx([(4 / 8 + 3 / 4) / 2, (2 / 8 + 0) / 2, 1.0, 0.0])
    W[0, :, 6] = 0.0  # a row of zeros has no mass anywhere
    assert query_masses(W, inputs, labels, context_len=4)[1].tolist() == [0.0, 0.0]


def test_answering_pairs_are_every_copy_and_only_the_latest_overwrite():
    repeated = MQARConfig(vocab_size=64, input_seq_len=32, num_kv_pairs=4, num_passes=2, num_examples=20).build(3)
    key, value = answer_masks(repeated.inputs, repeated.labels, 16)
    queries = repeated.labels != IGNORE_INDEX
    for b, q in queries.nonzero().tolist():
        (j,) = (repeated.inputs[b, 0:8:2] == repeated.inputs[b, q]).nonzero()[0].tolist()
        assert key[b, q].nonzero()[:, 0].tolist() == [2 * j, 2 * j + 8]
        assert value[b, q].nonzero()[:, 0].tolist() == [2 * j + 1, 2 * j + 9]
    assert not key[~queries].any() and not value[~queries].any()
    overwrite = OverwriteMQARConfig(vocab_size=64, input_seq_len=32, num_kv_pairs=4, num_overwrites=2, num_examples=20)
    segment = overwrite.build(5)
    key, value = answer_masks(segment.inputs, segment.labels, overwrite.context_len)
    for b, q in (segment.labels != IGNORE_INDEX).nonzero().tolist():
        (p,) = key[b, q].nonzero()[:, 0].tolist()
        assert segment.inputs[b, p] == segment.inputs[b, q] and segment.inputs[b, p + 1] == segment.labels[b, q]
        assert value[b, q].nonzero()[:, 0].tolist() == [p + 1]
        later = [s for s in range(p + 2, overwrite.context_len, 2) if segment.inputs[b, s] == segment.inputs[b, q]]
        assert later == []  # no later pair of this key: its label is the latest value


def test_retrieval_mass_gives_one_row_per_layer_in_the_unit_interval(tmp_path):
    run = saved_untrained(tmp_path / "run", ["attention", "attention"])
    table = retrieval_mass(run, n_examples=8)
    assert list(table.columns) == MASS_COLUMNS
    assert table["layer"].tolist() == [0, 1] and table["mixer"].tolist() == ["attention"] * 2
    assert table["slice"].tolist() == ["mqar-L32-N4"] * 2 and table["n_queries"].tolist() == [32, 32]
    for column in ("mass_on_value", "mass_on_key"):
        assert table[column].between(0, 1).all()
    assert (table["mass_on_value"] + table["mass_on_key"] <= 1 + 1e-9).all()
    assert table["accuracy"].isna().all()  # the run never finished: no recorded accuracy
    one = retrieval_mass(run, layer=1, n_examples=8)
    assert one["layer"].tolist() == [1]
    assert one["mass_on_value"].iloc[0] == pytest.approx(table["mass_on_value"].iloc[1])


def test_trained_attention_masses_are_its_softmax_weights_on_the_answering_pair(trained):
    with pytest.warns(UserWarning, match=r"skips layer 0: base_conv \(layer 0\) has no token-to-token weights"):
        table = retrieval_mass(trained, n_examples=50)
    assert table["layer"].tolist() == [1] and table["mixer"].tolist() == ["attention"]
    row = table.iloc[0]
    # recomputed without hooks: the attention layer's input is block 0's output, normed
    segment = load_segments(tiny_config(TRAINED), "test", torch.device("cpu"))[0]
    model = load_model(trained)
    inputs, positions, targets = segment.inputs[:50], segment.positions[:50], segment.targets[:50]
    with torch.no_grad():
        h = model.blocks[0](model.embed_tokens(inputs))
        W = model.blocks[1].mixer.token_weights(model.blocks[1].norm(h))[:, 0]  # one head: (50, L, L)
    on_value, on_key = [], []
    for b in range(50):
        for q in positions[b].tolist():
            j = (inputs[b, 0:8:2] == inputs[b, q]).nonzero()[0, 0]
            on_key.append(W[b, q, 2 * j])
            on_value.append(W[b, q, 2 * j + 1])
    assert row["n_queries"] == len(on_value) == 200
    assert row["mass_on_value"] == pytest.approx(float(torch.stack(on_value).mean()), abs=1e-6)
    assert row["mass_on_key"] == pytest.approx(float(torch.stack(on_key).mean()), abs=1e-6)
    assert row["mass_on_value"] > 0.8  # a model that recalls reads the value
    assert row["query_accuracy"] == pytest.approx(
        float((model(inputs, positions).argmax(-1) == targets).float().mean())
    )
    assert row["accuracy"] == pytest.approx(RunDir(trained).result()["last"]["slices"]["mqar-L32-N4"])


def test_explain_writes_a_png_per_example_and_prints_the_table(trained):
    out = explain(trained, "-n", "2", "--mass-examples", "16")
    assert out.returncode == 0, out.stderr
    pngs = sorted((trained / "explain").iterdir())
    assert [p.name for p in pngs] == [f"mqar-L32-N4-example{i}-layer1-heads-mean.png" for i in range(2)]
    for path in pngs:
        width, height = png_size(path)
        assert width > 600 and height > 300
        assert imread(path).shape[:2] == (height, width)
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["layer", "mixer", "slice"])
    assert "mass_on_value" in lines[header] and lines[header + 1].split()[:3] == ["1", "attention", "mqar-L32-N4"]
    assert any(line.startswith("skipped: retrieval mass skips layer 0: base_conv") for line in lines)
    elsewhere = trained.parent / "figures"
    out = explain(trained, "-n", "3", "--layer", "1", "--head", "0", "--out", elsewhere, "--mass-examples", "4")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == [f"mqar-L32-N4-example{i}-layer1-head0.png" for i in range(3)]
    assert len(list((trained / "explain").iterdir())) == 2


def test_bad_input_exits_2_with_one_line_naming_what_is_missing(trained, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(trained, older, ignore=shutil.ignore_patterns("model*.safetensors", "explain"))
    convs = saved_untrained(tmp_path / "convs", ["base_conv"])
    cases = [
        ([older], ["model.safetensors", "re-train"]),
        ([trained, "--layer", "2"], ["layer 2 is out of range", "0 … 1"]),
        ([trained, "--head", "1"], ["--head 1 is out of range", "1 head(s), 0 … 0"]),
        ([trained, "--layer", "0"], ["mixer base_conv has no token-to-token form"]),
        ([convs], ["no layer of this model has a token-to-token form", "base_conv"]),
    ]
    for (args, needles), (code, _, stderr) in zip(cases, explain_all([args for args, _ in cases])):
        assert code == 2, (args, stderr)
        assert "Traceback" not in stderr and stderr.startswith("error: "), stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        for needle in needles:
            assert needle in stderr, (needle, stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert retrieval_mass(convs, n_examples=2).empty
    assert any("base_conv" in str(w.message) for w in caught)
