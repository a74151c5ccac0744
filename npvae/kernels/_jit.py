"""What every Numba kernel module compiles with: the options, the constants, the
platform plumbing (or its plain stand-ins) the kernels call, and the helpers they share
(NumPy's exp over rows, per-thread scratch buffers). See
:mod:`npvae.kernels._numba` for how the loops are kept fast."""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
from numba import njit

from npvae.kernels import _reference
from npvae.plumbing import probe as _probe

# The platform plumbing the kernels compile with, or plain stand-ins for the pieces that
# are off or failed their self-test (npvae.plumbing.probe); kernels compiled with
# stand-ins are cached apart (each kernel module ends with separate_cache).
_parts = _probe.kernel_parts()
FTZ, flush_to_zero, restore_fp_mode = _parts.ftz, _parts.flush_to_zero, _parts.restore_fp_mode
call_unary, unary_loop = _parts.call_unary, _parts.unary_loop
matmul = _parts.matmul or _reference.matmul  # a kernel: the split GEMM, or np.dot
thread_count = _parts.thread_count or numba.get_num_threads

_CACHE = os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0"
_OPTS = dict(cache=_CACHE, nogil=True, error_model="numpy")
_REDUCE = dict(_OPTS, fastmath={"reassoc", "nsz"})
inline = njit(cache=_CACHE, inline="always", error_model="numpy")

LOG_2PI = float(np.log(2 * np.pi))
# Smallest normal numbers and -log of them, by itemsize: see _reference.flush_limits.
TINY32, TINY64 = float(np.finfo(np.float32).tiny), float(np.finfo(np.float64).tiny)
CUT32, CUT64 = -float(np.log(TINY32)), -float(np.log(TINY64))
PARALLEL_MIN = 1 << 16  # elements; below this a serial loop beats a thread launch


# --------------------------------------- helpers of every kernel module: exp over rows, scratch
# Inlined into the kernels of other files, whose disk cache does not see an edit here: after
# one, run once with NPVAE_NUMBA_CACHE=0 or delete the kernels' __pycache__.
def _exp_loop(dtype):
    """NumPy's SIMD ``exp`` loop for ``dtype``, for :func:`_exp_rows` (or ``NO_LOOP``)."""
    return unary_loop(np.exp, dtype)


@inline
def _exp_rows(loop, a, lo, hi):
    """``a[lo:hi] = exp(a[lo:hi])`` in place, through NumPy's loop ``loop`` (see
    :mod:`npvae.plumbing.ufunc_loop`), or Numba's scalar exp if ``loop`` is ``NO_LOOP``."""
    if loop[0] != 0:
        if a.flags.c_contiguous:  # the rows are one run of memory: one call
            block = a[lo:hi]
            call_unary(loop, block.ctypes.data, block.ctypes.data, block.size, a.itemsize)
        else:
            for r in range(lo, hi):
                row = a[r]
                call_unary(loop, row.ctypes.data, row.ctypes.data, row.size, row.strides[0])
    else:
        for r in range(lo, hi):
            for j in range(a.shape[1]):
                a[r, j] = np.exp(a[r, j])


_scratch = threading.local()


def _buffer(key, shape, dtype):
    """A per-thread scratch array named ``key``, reused while the shape stays the same."""
    buf = getattr(_scratch, key, None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype)
        setattr(_scratch, key, buf)
    return buf
