"""The plain stand-ins the Numba kernels compile with when a piece of plumbing is off:
no private interface of NumPy, of a BLAS or of the CPU is used, and the results are the
same (to an ulp for exp; to less than ``tiny`` for Adam's moments, flushed by compares).

Nothing here may fail on a new NumPy or Numba: it uses ``numba.njit`` and nothing else.
"""

from __future__ import annotations

import os

from numba import njit

_OPTS = dict(cache=os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0", inline="always")
NO_LOOP = (0, 0, 0)  # "NumPy's loop is not used": the kernels take Numba's scalar exp


def unary_loop(ufunc, dtype):
    """Always :data:`NO_LOOP`."""
    return NO_LOOP


@njit(**_OPTS)
def call_unary(loop, src, dst, n, stride):
    """Never reached (the kernels test ``loop[0] != 0`` first); here to be compiled."""


FTZ = False  # the kernels flush Adam's moments by compares


@njit(**_OPTS)
def flush_to_zero():
    return 0


@njit(**_OPTS)
def restore_fp_mode(old):
    pass
