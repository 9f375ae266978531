"""A tiny real sweep through the launcher, the plot command and the notebook."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from zoology import analysis, launch, plot, results
from zoology.bench import throughput
from zoology.errors import cli_main

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY_SWEEP = """
from zoology.config import TrainConfig

segment = {"input_seq_len": 16, "num_kv_pairs": 2, "num_examples": 64, "vocab_size": 32}
base = TrainConfig.model_validate({
    "model": {"vocab_size": 32, "d_model": 16, "mixers": ["base_conv", "attention"]},
    "data": {"train": [segment], "test": [segment, {**segment, "input_seq_len": 24, "num_kv_pairs": 4}],
             "batch_size": 32},
    "max_epochs": 2,
})
configs = [
    base.set({"model.d_model": d, "lr": lr, "model.mixers.1.name": mixer})
    for mixer, lrs in (("attention", (1e-3, 1e-2)), ("base_conv", (1e-2,)))
    for d in (8, 16)
    for lr in lrs
]
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    sweep_file = tmp / "tiny.py"
    sweep_file.write_text(TINY_SWEEP)
    assert launch.main([str(sweep_file), "--runs-dir", str(tmp / "runs"), "--device", "cpu"]) == 0
    return tmp / "runs" / "tiny"


def test_launcher_writes_the_frontier_when_the_sweep_ends(tiny_sweep):
    assert (tiny_sweep / "frontier.png").read_bytes().startswith(PNG_MAGIC)


def test_launcher_warns_when_there_is_nothing_to_plot(tmp_path, capsys):
    sweep_file = tmp_path / "failing.py"
    sweep_file.write_text(
        TINY_SWEEP + 'configs = [base.set({"model.mixers.1.name": "failing_mixers.Exploding", "max_epochs": 1})]\n'
    )
    assert launch.main([str(sweep_file), "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "warning: no frontier plot" in err and "this mixer always fails" in err


@pytest.mark.parametrize(
    "args", [["--plot", "frontier", "--metric", "best", "--unit", "bytes"], ["--plot", "slices"], ["--plot", "curves"]]
)
def test_plot_command_writes_each_figure(tiny_sweep, tmp_path, args):
    out = tmp_path / "figure.png"
    assert plot.main([str(tiny_sweep), "-o", str(out), *args]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)


def plot_cli(argv: list[str]) -> int:
    """`python -m zoology.plot ARGV` in this process: a user error is one line on stderr and exit code 2."""
    return cli_main(lambda: plot.main(argv))


def test_plot_command_explains_missing_throughput_and_unknown_slices(tiny_sweep, tmp_path, capsys):
    assert plot_cli([str(tiny_sweep), "--x", "throughput", "-o", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err
    assert f"`python -m zoology.bench throughput --sweep {tiny_sweep} -B 1 -P 256`" in err, err
    assert plot_cli([str(tiny_sweep), "--slices", "mqar-L999-*", "-o", str(tmp_path / "s.png")]) == 2
    assert "matches no test slice" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "s.png").exists()


def test_the_throughput_hint_runs_as_written_and_any_measured_point_plots(tiny_sweep, tmp_path, capsys):
    tiny_sweep = Path(shutil.copytree(tiny_sweep, tmp_path / "tiny"))  # the notebook test wants none measured
    assert plot_cli([str(tiny_sweep), "--x", "throughput", "-o", str(tmp_path / "t.png")]) == 2
    hint = capsys.readouterr().err.split("`")[1]
    argv = shlex.split(hint)[4:] + ["-P", "16", "--repeats", "1", "--warmup", "0", "--decode-steps", "2"]
    assert throughput.main(argv) == 0  # the hint's grid shrunk to a prompt of 16 tokens
    fig = analysis.plot_frontier(results.load(tiny_sweep), x="throughput")
    label = fig.axes[0].get_xlabel()
    assert label.endswith("(tokens/s, batch 1, prompt 16: nearest measured to 64 x 1024)"), label
    assert plot.main([str(tiny_sweep), "--x", "throughput"]) == 0
    assert (tiny_sweep / "frontier_throughput.png").read_bytes().startswith(PNG_MAGIC)


def test_notebook_runs_top_to_bottom(tiny_sweep, monkeypatch):
    monkeypatch.setenv("ZOOLOGY_SWEEP_DIR", str(tiny_sweep))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(ROOT / "notebooks" / "frontier.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("d_model=16" in t["data"]["text/html"] for t in tables)
