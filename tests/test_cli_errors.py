"""Every class of user mistake, through the real command lines: exit code 2, one or a few lines on
stderr that name the file or field, and no traceback (unless --debug asks for one)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sweep_helpers import ROOT, tiny_config

CUDA_LESS = {"CUDA_VISIBLE_DEVICES": ""}
"""Whatever the machine, torch sees no CUDA device."""

GOOD_YAML = """\
model: {vocab_size: 64, d_model: 16, n_layers: 2, mixers: [base_conv, attention]}
data:
  train: [{input_seq_len: 16, num_kv_pairs: 2, vocab_size: 64, num_examples: 64}]
  test: [{input_seq_len: 16, num_kv_pairs: 2, vocab_size: 64, num_examples: 16}]
max_epochs: 1
device: cpu
"""


def cli(cwd: Path, module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> args…` in `cwd`, with this checkout (and cwd, for user mixer modules) importable."""
    path = os.pathsep.join([str(ROOT), str(cwd), os.environ.get("PYTHONPATH", "")])
    environment = {k: v for k, v in os.environ.items() if k != "ZOOLOGY_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**environment, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, an `error:` line, and every needle in stderr; returns stderr."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{err}"
    assert "Traceback" not in err, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return err


def sweep_file(tmp_path: Path, body: str, name: str = "s.py") -> Path:
    """A sweep file that defines `base` (a valid tiny TrainConfig) and then runs `body`."""
    path = tmp_path / name
    config = tiny_config("a", tmp_path / "record.txt", epochs=1)
    path.write_text(
        "from zoology.config import TrainConfig\n"
        f"base = TrainConfig.model_validate({config!r})\n" + textwrap.dedent(body)
    )
    return path


def launch(tmp_path: Path, body: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    sweep = sweep_file(tmp_path, body)
    return cli(tmp_path, "zoology.launch", sweep.name, "--runs-dir", "runs", "--dry-run", *args, env=env)


# --- sweep files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, needles",
    [
        ("x = 1\n", ["s.py: a sweep file must define `configs"]),
        ("configs = 5\n", ["s.py: configs must be a list of TrainConfig, not int (5)"]),
        ("configs = base\n", ["s.py: configs is one TrainConfig (probe-a), not a list"]),
        ("configs = [base, {'lr': 1}]\n", ["s.py: configs[1] is a dict", "not a TrainConfig"]),
        ("configs = []\n", ["s.py: configs is empty"]),
        ("configs = [base\n", ["s.py:3: SyntaxError"]),
        ("configs = [bse]\n", ["s.py:3: NameError: name 'bse' is not defined"]),
    ],
    ids=["missing", "not-a-list", "one-config", "not-a-config", "empty", "syntax-error", "name-error"],
)
def test_bad_sweep_file_is_one_line_naming_the_file(tmp_path, body, needles):
    assert_user_error(launch(tmp_path, body), *needles)


def test_missing_sweep_file(tmp_path):
    assert_user_error(cli(tmp_path, "zoology.launch", "nope.py"), "no sweep file 'nope.py'")


@pytest.mark.parametrize(
    "update, needles",
    [
        ({"model.d_model": 0}, ["s.py:3: model.d_model: Input should be greater than or equal to 1 (got 0)"]),
        ({"lr": "fast"}, ["s.py:3: lr: Input should be a valid number", "(got 'fast')"]),
        ({"model.mixers.1.kwargs": {"num_heads": 3}}, ["model: mixers[1] (attention): num_heads=3", "d_model=16"]),
        ({"betas": [0.9, 1.0]}, ["s.py:3: betas: Adam's betas must each be in [0, 1)", "got [0.9, 1.0]"]),
        ({"device": "tpu"}, ["s.py:3: device: 'tpu' is not a device: use 'auto', 'cpu', 'cuda'"]),
    ],
    ids=["range", "type", "head-count", "betas", "device-value"],
)
def test_invalid_config_in_a_sweep_names_the_line_and_field(tmp_path, update, needles):
    assert_user_error(launch(tmp_path, f"configs = [base.set({update!r})]\n"), *needles)


def test_unknown_field_lists_the_allowed_ones(tmp_path):
    err = assert_user_error(launch(tmp_path, "configs = [base.set({'model.n_heads': 2})]\n"), "s.py:3: model.n_heads")
    assert "unknown field 'n_heads'; allowed: d_model, embed_dropout, mixers" in err


def test_two_identical_test_slices_are_refused_when_the_config_is_built(tmp_path):
    body = "t = base.data.test[0].model_dump()\nconfigs = [base.set({'data.test': [t, {**t, 'num_examples': 8}]})]\n"
    assert_user_error(launch(tmp_path, body), "s.py:4: data: test[0] and test[1] are the same slice 'mqar-L16-N2'")


def test_identical_configs_collapse_with_a_warning_and_the_launch_goes_on(tmp_path):
    proc = launch(tmp_path, "configs = [base, base.set({'name': 'again'}), base, base.set({'lr': 3e-3})]\n")
    assert proc.returncode == 0, proc.stderr
    assert "warning: s.py: 2 of 4 configs collapse into others with the same run id" in proc.stderr
    assert "configs[1] into configs[0] (probe-a): 2 run(s) remain" in proc.stderr
    assert "2 runs, 0 finished, 2 to run" in proc.stdout


# --- user mixer modules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, needles",
    [
        ("class M(:\n", ["mixer 'broken_mixer.M': importing module 'broken_mixer' raised SyntaxError"]),
        ("raise RuntimeError('needs a GPU')\n", ["importing module 'broken_mixer' raised RuntimeError: needs a GPU"]),
    ],
    ids=["syntax-error", "runtime-error"],
)
def test_user_mixer_that_fails_on_import_is_named(tmp_path, source, needles):
    (tmp_path / "broken_mixer.py").write_text(source)
    proc = launch(tmp_path, "configs = [base.set({'model.mixers.1.name': 'broken_mixer.M'})]\n")
    assert_user_error(proc, "s.py:3: model.mixers[1]: ", *needles)


# --- launcher flags ----------------------------------------------------------------------------------


def test_bad_filter_regex(tmp_path):
    assert_user_error(
        launch(tmp_path, "configs = [base]\n", "--filter", "("), "--filter '(' is not a regular expression"
    )


def test_filter_matching_nothing_exits_2_and_shows_the_names(tmp_path):
    proc = launch(tmp_path, "configs = [base]\n", "--filter", "^zzz")
    assert_user_error(proc, "--filter '^zzz' matches none of the sweep's 1 run names (probe-a)")


def test_unknown_device_names_the_allowed_ones(tmp_path):
    proc = launch(tmp_path, "configs = [base]\n", "--device", "tpu")
    assert_user_error(proc, "--device 'tpu': use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def test_cuda_without_cuda_fails_once_before_any_run(tmp_path):
    body = "configs = [base, base.set({'lr': 3e-3})]\n"
    sweep = sweep_file(tmp_path, body)
    proc = cli(tmp_path, "zoology.launch", sweep.name, "--runs-dir", "runs", "--device", "cuda", env=CUDA_LESS)
    err = assert_user_error(proc, "--device cuda: this machine has no CUDA device")
    assert err.count("error:") == 1 and not list((tmp_path / "runs").glob("*/*/config.json"))
    proc = launch(tmp_path, "configs = [base.set({'device': 'cuda:0', 'name': 'on-gpu'})]\n", env=CUDA_LESS)
    assert_user_error(proc, "s.py: run on-gpu: device='cuda:0', but this machine has no CUDA device")


@pytest.mark.parametrize(
    "runs_dir, needles",
    [
        ("a_file", ["--runs-dir: a_file is a file, not a directory"]),
        ("a_file/below", ["--runs-dir: a_file is a file, not a directory"]),
        ("/proc/zoology-runs", ["--runs-dir: cannot create /proc/zoology-runs/s"]),
    ],
    ids=["file", "under-a-file", "impossible"],
)
def test_runs_dir_that_cannot_hold_runs(tmp_path, runs_dir, needles):
    sweep = sweep_file(tmp_path, "configs = [base]\n")
    (tmp_path / "a_file").write_text("")
    assert_user_error(cli(tmp_path, "zoology.launch", sweep.name, "--runs-dir", runs_dir), *needles)


# --- zoology.train and YAML ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, needles",
    [
        ("model:\n  d_model: 3\n   x: [\n", ["c.yaml:3:5: not valid YAML: mapping values are not allowed here"]),
        ("", ["c.yaml: must be a mapping of fields", "not an empty document"]),
        ("- attention\n- based\n", ["c.yaml: must be a mapping of fields", "not a list"]),
        (GOOD_YAML.replace("d_model: 16", "d_model: sixteen"), ["c.yaml: model.d_model: Input should be a valid"]),
        (
            GOOD_YAML.replace("num_kv_pairs: 2, vocab_size: 64, num_examples: 16", "num_kv_pair: 2"),
            ["c.yaml: data.test[0].num_kv_pair: unknown field 'num_kv_pair'; allowed: filler, input_seq_len"],
        ),
    ],
    ids=["malformed", "empty", "list", "field-type", "unknown-segment-field"],
)
def test_bad_yaml_config_names_the_file_and_line_or_field(tmp_path, text, needles):
    (tmp_path / "c.yaml").write_text(text)
    assert_user_error(cli(tmp_path, "zoology.train", "c.yaml", "--runs-dir", "runs"), *needles)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["no_such_preset"], ["no config file 'no_such_preset', nor a preset", "attention"]),
        (["c.yaml", "--set", "lr"], ["--set 'lr': an override must look like key.path=value"]),
        (
            ["c.yaml", "--set", "model.mixers.1={name: attention, kwargs: {num_heads: 3}}"],
            ["model: mixers[1] (attention): num_heads=3"],
        ),
        (["c.yaml", "--set", "device=cuda"], ["c.yaml: device='cuda', but this machine has no CUDA device"]),
        (["c.yaml", "--runs-dir", "c.yaml"], ["--runs-dir: c.yaml is a file, not a directory"]),
    ],
    ids=["no-preset", "override-syntax", "override-head-count", "cuda-less", "runs-dir-file"],
)
def test_train_flags(tmp_path, args, needles):
    (tmp_path / "c.yaml").write_text(GOOD_YAML)
    assert_user_error(cli(tmp_path, "zoology.train", *args, env=CUDA_LESS), *needles)
    assert not (tmp_path / "runs").exists()


# --- the other commands --------------------------------------------------------------------------------


def test_data_show_bad_inline_segment_names_the_field(tmp_path):
    proc = cli(tmp_path, "zoology.data", "show", "{task: ar, input_seq_len: x, num_examples: 2, num_kv_pairs: 2}")
    assert_user_error(proc, "input_seq_len: Input should be a valid integer", "(got 'x')")
    proc = cli(tmp_path, "zoology.data", "show", "{task: ar, input_seq_len: [")
    assert_user_error(proc, "not valid YAML")


def test_plot_eval_and_bench_report_user_errors_the_same_way(tmp_path):
    assert_user_error(cli(tmp_path, "zoology.plot", "no_sweep"), "no sweep directory 'no_sweep'")
    assert_user_error(cli(tmp_path, "zoology.eval", "no_sweep", "--test", "x", "--device", "tpu"), "--device 'tpu'")
    assert_user_error(cli(tmp_path, "zoology.bench", "nope"), "unknown benchmark 'nope'; available: ")


# --- tracebacks ----------------------------------------------------------------------------------------


def test_debug_flag_or_variable_shows_the_traceback(tmp_path):
    for args, env in ((("--debug",), None), ((), {"ZOOLOGY_DEBUG": "1"})):
        proc = launch(tmp_path, "configs = 5\n", *args, env=env)
        assert proc.returncode != 0
        assert "Traceback" in proc.stderr and "UserError: s.py: configs must be a list" in proc.stderr
    assert "--debug" in cli(tmp_path, "zoology.launch", "--help").stdout


def test_an_error_in_our_own_code_keeps_its_traceback(tmp_path):
    code = "import sys\nfrom zoology.errors import cli_main\nsys.exit(cli_main(lambda: {}['missing']))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'missing'" in proc.stderr
    assert "error:" not in proc.stderr
