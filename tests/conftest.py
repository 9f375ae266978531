"""Shared pytest setup.

Mixer conformance: tests that take a `mixer_spec` argument run once per registered mixer and once per
extra mixer named with `pytest --mixer SPEC` (repeatable) or in the ZOOLOGY_MIXERS environment
variable (comma-separated). A SPEC is a registry name or dotted path to an nn.Module class, optionally
with constructor kwargs: `my_package.my_module.MyMixer:num_heads=2`.
"""

from __future__ import annotations

import os

import torch

from zoology import mixers

if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


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


def mixer_specs(config) -> list[str]:
    extra = [s.strip() for s in os.environ.get("ZOOLOGY_MIXERS", "").split(",") if s.strip()]
    return list(dict.fromkeys([*mixers.names(), *extra, *config.getoption("--mixer")]))


def pytest_generate_tests(metafunc) -> None:
    if "mixer_spec" in metafunc.fixturenames:
        metafunc.parametrize("mixer_spec", mixer_specs(metafunc.config))
