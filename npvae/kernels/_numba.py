"""Numba kernels: the loops of :mod:`npvae.kernels._reference`, fused and allocation-free.

This module is the numba backend's namespace: it gathers the kernels from one module per
concept (``_numba_dense``, ``_numba_kl``, ``_numba_iwae``, ``_numba_likelihood``,
``_numba_optim``, ``_numba_samplers``), each the twin of the ``_reference_*`` module of the
same concept; what they all compile with is in :mod:`npvae.kernels._jit`. Each public
function has the name, signature and meaning of its reference twin; read the reference for
the math. Here the work is done in one pass over memory with no temporaries. How the loops
are kept fast:

* ``error_model="numpy"``: with Python's error model every division checks for zero,
  which stops LLVM from vectorising the loop.
* Constants are cast to the array's dtype (``dt(...)``) so float32 loops stay float32.
* ``v ** 0.5`` rather than ``np.sqrt(v)``: only the former vectorises in Numba here.
* Kernels with a floating-point reduction may reassociate it (``fastmath={"reassoc"}``),
  which lets the sum vectorise; no flag that assumes away NaN or inf is ever set, so the
  finiteness checks downstream keep working.
* ``exp`` is NumPy's own SIMD loop, called from inside the kernels on the rows they work
  on (:mod:`npvae.plumbing.ufunc_loop`); Numba's ``np.exp`` is a scalar libm call, about
  20x slower per value.
* Adam's moments are flushed below ``tiny`` by the CPU's flush-to-zero mode, set for the
  length of the loop (:mod:`npvae.plumbing.fpmode`), not by a compare per value.
* Large buffers go to a ``prange`` twin of the loop (each thread writes its own
  elements); small ones stay serial, where a thread launch costs more than it saves.
* Numba's pool also runs NumPy's OpenBLAS jobs, so GEMMs and these loops never compete
  for the cores (see :mod:`npvae.kernels` and :mod:`npvae.plumbing.blas_pool`).

Compilation is lazy (nothing compiles at import) and cached on disk unless
``NPVAE_NUMBA_CACHE=0``.
"""
from __future__ import annotations

from npvae.kernels._jit import (  # noqa: F401 (FTZ, PARALLEL_MIN, matmul, ...: read from here)
    FTZ,
    PARALLEL_MIN,
    _buffer,
    _exp_loop,
    _exp_rows,
    _parts,
    matmul,
)
from npvae.kernels._numba_dense import act_backward, bias_act, bias_act_pre  # noqa: F401
from npvae.kernels._numba_iwae import iwae_backward, iwae_weights  # noqa: F401
from npvae.kernels._numba_kl import sample_kl, sample_kl_backward  # noqa: F401
from npvae.kernels._numba_likelihood import (  # noqa: F401 (and constants read by the tests)
    LOG1P_CHUNK,
    ROW_CHUNKS,
    _row_chunks,
    bernoulli_nll,
    bernoulli_nll_rows,
    gaussian_nll,
    gaussian_nll_rows,
    sigmoid,
)
from npvae.kernels._numba_optim import (  # noqa: F401 (kernels; the twins, for the tests)
    _adam_outer_parallel,
    _adam_parallel,
    _adam_range,
    adam_step,
    adam_step_outer,
    sgd_step,
    sum_squares,
)
from npvae.kernels._numba_samplers import (  # noqa: F401
    leapfrog_drift,
    leapfrog_kick,
    leapfrog_kick_drift,
    normal_log_density,
    select_rows,
)
