"""The package as users install it: the presets in configs/ ship with it, so a preset trains and a copied
sweep file plans its runs from any directory, installed from a wheel or in editable mode, or from a
checkout on PYTHONPATH without installing.

Every subprocess runs in a temporary directory with PYTHONPATH cleared (unless the test sets it), so it
imports only the zoology it is meant to. The virtual environments see this interpreter's packages
(torch, pip, setuptools), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from zoology import launch
from zoology.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TRAIN_OVERRIDES = ["max_epochs=1", "device=cpu", "data.train.0.num_examples=256", "data.test.0.num_examples=64"]
SWEEPS = ["sweeps/mqar.py", "sweeps/based_figure2.py"]
PIP_OFFLINE = ["-q", "--no-deps", "--no-index", "--no-build-isolation", "--disable-pip-version-check"]


def run(python: Path, args: list[str], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """`python args` in `cwd`, PYTHONPATH cleared (or set to `pythonpath`); fails the test on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def make_venv(path: Path) -> Path:
    """A virtual environment that also sees this interpreter's site-packages (even when this one is
    itself a venv, whose packages --system-site-packages would miss); returns its python."""
    venv.create(path, system_site_packages=True, with_pip=False)
    python = path / "bin" / "python"
    purelib = run(python, ["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path).stdout.strip()
    (Path(purelib) / "parent-site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def pip_install(python: Path, target: list[str], cwd: Path) -> None:
    """Install into the venv of `python`, ignoring any zoology installed outside it."""
    run(python, ["-m", "pip", "install", *PIP_OFFLINE, "--ignore-installed", *target], cwd)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of what the build reads, so building leaves nothing behind in the checkout."""
    copy = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    for name in ("zoology", "configs"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory outside the checkout, holding copies of the sweep files."""
    work = tmp_path_factory.mktemp("work")
    for sweep in SWEEPS:
        shutil.copy(ROOT / sweep, work / Path(sweep).name)
    return work


@pytest.fixture(scope="module")
def wheel_python(source, tmp_path_factory) -> Path:
    """The python of a fresh venv with a wheel of the project installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(Path(sys.executable), ["-m", "pip", "wheel", *PIP_OFFLINE, "-w", str(tmp / "dist"), str(source)], tmp)
    (wheel,) = (tmp / "dist").glob("zoology-*.whl")
    python = make_venv(tmp / "venv")
    pip_install(python, [str(wheel)], tmp)
    return python


def where(python: Path, cwd: Path, pythonpath: Path | None = None) -> dict:
    """The zoology package `python` imports, the presets directory it reads (both resolved) and the
    preset names there."""
    code = (
        "import json, pathlib, zoology, zoology.config as c; "
        "print(json.dumps({'package': str(pathlib.Path(zoology.__file__).resolve().parent), "
        "'presets': str(c.PRESETS_DIR.resolve()), 'names': sorted(p.stem for p in c.PRESETS_DIR.glob('*.yaml'))}))"
    )
    return json.loads(run(python, ["-c", code], cwd, pythonpath).stdout)


def preset_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


def test_wheel_ships_every_module_and_preset(wheel_python, workdir):
    found = where(wheel_python, workdir)
    package = Path(found["package"])
    assert package.is_relative_to(wheel_python.parent.parent.resolve()), f"zoology imported from {package}"
    assert Path(found["presets"]) == package / "configs" and found["names"] == preset_names()
    modules = {p.relative_to(ROOT / "zoology") for p in (ROOT / "zoology").rglob("*.py")}
    missing = sorted(str(m) for m in modules if not (package / m).is_file())
    assert not missing, f"the wheel lacks {missing}: setup.py should find every package"
    for name in preset_names():
        assert (package / "configs" / f"{name}.yaml").read_text() == (ROOT / "configs" / f"{name}.yaml").read_text()


def test_preset_trains_from_the_wheel(wheel_python, workdir):
    printed = run(wheel_python, ["-m", "zoology.train", "attention", "--set", *TRAIN_OVERRIDES], workdir).stdout
    run_id = TrainConfig.from_yaml("attention", TRAIN_OVERRIDES).run_id
    assert f"run {run_id}" in printed
    result = json.loads((workdir / "runs" / "train-base_conv+attention" / run_id / "result.json").read_text())
    assert result["run_id"] == run_id and result["epochs"] == 1 and result["device"] == "cpu"
    assert 0.0 <= result["last"]["acc"] <= 1.0 and list(result["last"]["slices"]) == ["mqar-L64-N8"]


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_file_plans_from_the_wheel(wheel_python, workdir, sweep):
    name = Path(sweep).stem
    printed = run(wheel_python, ["-m", "zoology.launch", f"{name}.py", "--dry-run"], workdir).stdout
    expected = [c.run_id for c in launch.load_sweep(ROOT / sweep)]
    assert re.search(rf"^sweep runs/{name}: {len(expected)} runs, 0 finished, {len(expected)} to run$", printed, re.M)
    assert re.findall(r"^\s+todo\s+([0-9a-f]{12})\s", printed, re.M) == expected


def test_presets_found_in_an_editable_install(source, tmp_path, workdir):
    python = make_venv(tmp_path / "venv")
    pip_install(python, ["-e", str(source)], tmp_path)
    found = where(python, workdir)
    assert Path(found["package"]) == source.resolve() / "zoology"
    assert Path(found["presets"]) == source.resolve() / "configs" and found["names"] == preset_names()


def test_presets_found_from_a_checkout_on_pythonpath(workdir):
    found = where(Path(sys.executable), workdir, pythonpath=ROOT)
    assert Path(found["package"]) == ROOT / "zoology"
    assert Path(found["presets"]) == ROOT / "configs" and found["names"] == preset_names()
