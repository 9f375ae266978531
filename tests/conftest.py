"""Shared pytest setup.

Mixer conformance: tests that take a `mixer_spec` argument run once per registered mixer and once per
extra mixer named with `pytest --mixer SPEC` (repeatable) or in the ZOOLOGY_MIXERS environment
variable (comma-separated). A SPEC is a registry name or dotted path to an nn.Module class, optionally
with constructor kwargs: `my_package.my_module.MyMixer:num_heads=2`.
"""

from __future__ import annotations

import os
import shlex
import signal

import pytest
import torch

from zoology import mixers
from zoology.config import TrainConfig

if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)

# A shell without job control starts background commands with SIGINT ignored, and children inherit
# that: the launchers these tests interrupt as Ctrl-C would then never see it. Tests run as from a
# terminal, wherever they were started from.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--mixer",
        action="append",
        default=[],
        metavar="SPEC",
        help="also run the mixer conformance kit on this mixer: a dotted path to an nn.Module class "
        "(or a registry name), optionally with :key=value constructor kwargs; repeatable. "
        "ZOOLOGY_MIXERS takes a comma-separated list of the same.",
    )


def extra_mixer_specs(config) -> list[str]:
    """The mixers named with ZOOLOGY_MIXERS or --mixer, beside the registered ones."""
    extra = [s.strip() for s in os.environ.get("ZOOLOGY_MIXERS", "").split(",") if s.strip()]
    return list(dict.fromkeys([*extra, *config.getoption("--mixer")]))


def mixer_specs(config) -> list[str]:
    return list(dict.fromkeys([*mixers.names(), *extra_mixer_specs(config)]))


def pytest_report_collectionfinish(config, items) -> list[str]:
    """A mixer named to check, in a run that also selects tests taking no mixer: say that those run
    too (the whole suite takes minutes) and how to run only the named mixer's tests."""
    extra = extra_mixer_specs(config)
    others = [item for item in items if "mixer_spec" not in getattr(item, "fixturenames", ())]
    if not extra or not others:
        return []
    name = extra[0].split(":")[0].rpartition(".")[2]
    return [
        f"note: {', '.join(extra)} joins the {len(items) - len(others)} selected tests that take a mixer; the "
        f"other {len(others)} selected tests run as usual (all of tests/: 5-15 minutes on 2 cores). "
        f"For this mixer only: python -m pytest tests/test_mixer_conformance.py tests/test_model_recurrent.py "
        f"--mixer {shlex.quote(extra[0])} -k {name}"
    ]


def pytest_generate_tests(metafunc) -> None:
    if "mixer_spec" in metafunc.fixturenames:
        metafunc.parametrize("mixer_spec", mixer_specs(metafunc.config))


def tiny_config(updates: dict | None = None) -> TrainConfig:
    """A [base_conv, attention] model on a small, easy MQAR; trains in seconds on a CPU."""
    config = TrainConfig.model_validate(
        {
            "model": {"vocab_size": 64, "d_model": 32, "mixers": ["base_conv", "attention"]},
            "data": {
                "train": [{"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 4000}],
                "test": [{"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 200}],
                "batch_size": 64,
            },
            "lr": 1e-2,
            "max_epochs": 2,
            "device": "cpu",
        }
    )
    return config.set(updates) if updates else config


@pytest.fixture
def tiny():
    return tiny_config
