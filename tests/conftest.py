"""Hypothesis profiles and shared fixtures.

Profiles (select with ``HYPOTHESIS_PROFILE``):

* ``ci`` (default): derandomised, so a run is reproducible; a modest number of examples.
* ``thorough``: many more examples, randomised, for a developer hunting for edge cases.

Both have no deadline: the first call of a Numba kernel compiles it, which would turn a
per-example deadline into a flaky failure.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
