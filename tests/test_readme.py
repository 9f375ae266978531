"""The README works as written: its commands run, in order, on a CPU, as a new user would run them.

How a block is chosen:
- every ```bash block of README.md is run line by line (a line ending in `\\` continues on the
  next), in README order, in one working directory laid out like the repository, so each command
  sees what the earlier ones left (the sweep the quickstart trains is the one the plot commands
  read). A line's leading `pip install … &&` is dropped (this test runs in an installed
  environment). Lines matching NOT_RUN are left out, each for the reason given there (and each
  pattern must still match some README line, so the list cannot go stale);
- a ```python block that starts with `# <path>.py` shows a file: if the repository has that file,
  every line of the block must be one of its lines; if not (a file the reader is asked to write),
  it is written into the working directory and, for a sweep, loaded;
- any other ```python block is run as a script at its place in the order, unless it is an excerpt
  (it has `...` in its code).

How it is shrunk, so the whole README runs in minutes:
- the sweep files and presets it names are replaced in the working directory by small stand-ins:
  the real file's configs, names, models and learning rates unchanged, with 32 training and 16
  validation and test examples per segment and one epoch (so filters, labels and plots behave as
  documented);
- a command training a preset by name (`python -m zoology.train text`, which reads the installed
  preset, not the working directory's) gets the same shrinking as `--set` overrides appended;
- benchmark commands get small settings appended (later flags win): see SHRINK.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from zoology.config import TrainConfig
from zoology.runner.plan import load_sweep

ROOT = Path(__file__).resolve().parent.parent

NOT_RUN = {
    r"^pip install [^&]*$": "installs packages; the test runs in an installed environment",
    r"^python -m pytest$": "the whole test suite, which this test is part of",
    r"--gpus ": "needs GPUs",
    r"--address auto": "needs a running Ray cluster",
}
SHRINK = {
    "python -m zoology.bench throughput": "-B 1 -P 16 --repeats 1 --warmup 0 --decode-steps 2",
    "python -m zoology.bench mixers": "--d-model 16 --batch 2 --seq-len 32 --repeats 1 --warmup 0",
}
STAND_IN = """\
# A small stand-in for {real}, written by tests/test_readme.py: the same configs, names, models and
# learning rates, each shrunk by tests.test_readme.shrink.
from tests.test_readme import shrink
from zoology.runner.plan import load_sweep

configs = [shrink(c) for c in load_sweep({real!r})]
"""


def shrinking(config: TrainConfig) -> dict:
    """What shrinks a config: 32 training and 16 validation and test examples per segment, one epoch."""
    updates: dict = {"max_epochs": 1}
    for split, n in (("train", 32), ("valid", 16), ("test", 16)):
        for i, _ in enumerate(getattr(config.data, split)):
            updates[f"data.{split}.{i}.num_examples"] = n
    return updates


def shrink(config: TrainConfig) -> TrainConfig:
    """A config's stand-in: shrunk (see shrinking), the same name."""
    return config.set({**shrinking(config), "name": config.name})


def bare(line: str) -> str:
    """A README command without its aligned comment and its leading `pip install … &&`."""
    return re.sub(r"^pip install [^&]*&&\s*", "", re.sub(r"\s+#\s.*$", "", line))


def readme_blocks() -> list[tuple[int, str, list[str]]]:
    """(line number of the first line, language, lines) of every fenced block of README.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)", lines[i].strip())
        i += 1
        if fence:
            start = i
            while not lines[i].startswith("```"):
                i += 1
            blocks.append((start + 1, fence[1], lines[start:i]))
            i += 1
    return blocks


def readme_steps() -> list[tuple[int, str, str]]:
    """(line number, kind, text) in README order: ('bash', one command as README shows it),
    ('python', a script) and ('file', a block showing a file)."""
    steps = []
    for first, language, body in readme_blocks():
        if language == "bash":
            text = "\n".join(body).replace("\\\n", " ")
            numbers = [first + i for i, line in enumerate(body) if i == 0 or not body[i - 1].endswith("\\")]
            commands = text.split("\n")
            steps += [(n, "bash", c.strip()) for n, c in zip(numbers, commands) if c.strip() and not c.startswith("#")]
        elif language == "python":
            text = "\n".join(body)
            if re.match(r"# [\w/]+\.py$", body[0]):
                steps.append((first, "file", text))
            elif not re.search(r"(^|[^.])\.\.\.([^.]|$)", text):
                steps.append((first, "python", text))
    return steps


def not_run(command: str) -> str | None:
    """Why a README command is not run here, or None."""
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, bare(command))), None)


def command_of(line: str) -> str:
    """What this test runs for a README command line: the line, shrunk (a preset trained by name, SHRINK)."""
    line = bare(line)
    preset = re.fullmatch(r"python -m zoology\.train ([\w-]+)", line)
    if preset:
        updates = shrinking(TrainConfig.from_yaml(preset[1]))
        line = f"{line} --set {' '.join(f'{key}={value}' for key, value in updates.items())}"
    for prefix, flags in SHRINK.items():
        if prefix in line:
            line = f"{line} {flags}"
    return line


STEPS = readme_steps()
RUN = [step for step in STEPS if step[1] != "bash" or not_run(step[2]) is None]


def test_every_not_run_pattern_still_matches_a_readme_line():
    commands = [bare(text) for _, kind, text in STEPS if kind == "bash"]
    for pattern in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), f"NOT_RUN {pattern!r} matches no README command"
    assert len([s for s in RUN if s[1] == "bash"]) >= 25  # the README's commands were found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory laid out like the repository, with the stand-ins the module docstring describes."""
    work = tmp_path_factory.mktemp("readme")
    (work / "sweeps").mkdir()
    for real in sorted((ROOT / "sweeps").glob("*.py")):
        (work / "sweeps" / real.name).write_text(STAND_IN.format(real=str(real)))
    (work / "configs").mkdir()
    for preset in sorted((ROOT / "configs").glob("*.yaml")):
        small = shrink(TrainConfig.from_yaml(preset)).model_dump(mode="json", exclude_defaults=True)
        (work / "configs" / preset.name).write_text(yaml.safe_dump(small, sort_keys=False))
    (work / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "my_mixer.py", work / "examples" / "my_mixer.py")
    real_sweep = ROOT / "examples" / "my_mixer_sweep.py"
    (work / "examples" / "my_mixer_sweep.py").write_text(STAND_IN.format(real=str(real_sweep)))
    (work / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "frontier.ipynb", work / "notebooks")
    (work / "tests").symlink_to(ROOT / "tests")
    return work


@pytest.mark.parametrize("line, kind, text", RUN, ids=[f"README.md:{n}" for n, _, _ in RUN])
def test_readme_step_runs_as_written(workdir, line, kind, text):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "WANDB_SILENT": "true",
    }
    if kind == "file":
        path = text.splitlines()[0][2:]
        shown = [ln for ln in text.splitlines()[1:] if ln.strip()]
        if (ROOT / path).exists():
            missing = [ln for ln in shown if ln not in (ROOT / path).read_text().splitlines()]
            assert not missing, f"README.md:{line} shows lines {path} does not have: {missing}"
            return
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(textwrap.dedent(text) + "\n")
        if path.startswith("sweeps/"):
            sys.path.insert(0, str(workdir))
            try:
                assert load_sweep(workdir / path)
            finally:
                sys.path.remove(str(workdir))
        return
    if kind == "python":
        argv = [sys.executable, "-c", text]
    else:
        argv = ["bash", "-c", command_of(text)]
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README.md:{line} exits {proc.returncode}:\n{text}\n{output[-3000:]}"
    assert "Traceback" not in output, f"README.md:{line}:\n{output[-3000:]}"
