"""Hypothesis strategies: bounded shapes and values, batch 1 included."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

batch = st.integers(1, 5)
width = st.integers(1, 6)
seeds = st.integers(0, 2**32 - 1)


def arrays(shape, dtype=np.float64, lo=-3.0, hi=3.0):
    """Arrays of finite values in [lo, hi] (bounded from the start: unbounded floats overflow)."""
    return hnp.arrays(
        dtype, shape,
        elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False,
                           width=np.dtype(dtype).itemsize * 8),
    )
