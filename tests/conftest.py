"""Shared fixtures: Keras on the torch backend, and the hypothesis budgets.

Hypothesis budgets for the property-based tests (tests/test_fuzz.py):

The default run draws a fixed, small number of examples with a fixed seed
(`derandomize`), so CI is repeatable; `--hypothesis-profile=fuzz` draws many
more, freshly random each run (minutes; see docs/reliability.md). Without
hypothesis installed, test_fuzz.py is skipped and nothing here applies.
"""
import os

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:
    settings = None

if settings is not None:
    settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("fuzz", max_examples=3000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("default")


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on its torch backend (the Keras tests' oracle); skipped without keras."""
    os.environ["KERAS_BACKEND"] = "torch"     # before the first import of keras
    return pytest.importorskip("keras")
