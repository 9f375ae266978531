"""The conformance kit on every registered mixer and on any named by ZOOLOGY_MIXERS / --mixer.

ZOOLOGY_TEST_DEVICE=cuda runs it on a GPU (default: cpu).
"""

from __future__ import annotations

import os

import pytest

from zoology.mixers import conformance

DEVICE = os.environ.get("ZOOLOGY_TEST_DEVICE", "cpu")


@pytest.mark.parametrize("check", conformance.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(mixer_spec, check):
    check(mixer_spec, device=DEVICE)
