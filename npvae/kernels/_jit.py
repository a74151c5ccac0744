"""What every Numba kernel module compiles with: the options, the constants, and the
platform plumbing (or its plain stand-ins) the kernels call. See
:mod:`npvae.kernels._numba` for how the loops are kept fast."""

from __future__ import annotations

import os

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
