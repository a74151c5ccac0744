"""Kernel backends: ``numba`` (compiled, the default) and ``numpy`` (the readable reference).

Both expose the same functions with the same signatures (see
:mod:`npvae.kernels._reference` for the math). Choose one for the whole library with the
environment variable ``NPVAE_BACKEND=numpy`` (or ``NPVAE_DISABLE_NUMBA=1``), or per model
with ``VAE(backend="numpy")``. If Numba cannot be imported, ``numba`` falls back to
``numpy``. Importing this module compiles nothing: Numba compiles each kernel on its first
call and caches the machine code on disk (``NPVAE_NUMBA_CACHE=0`` turns that off).

Loading the ``numba`` backend starts Numba's thread pool with ``OMP_WAIT_POLICY=PASSIVE``
(unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set), then puts the environment back.
Numba's OpenMP threads then sleep when a parallel loop ends instead of spinning for
milliseconds. A training step alternates BLAS calls, which run on OpenBLAS's own threads,
with the parallel Adam loop; spinning OpenMP threads held the cores the next GEMMs needed
(on 2 cores a batch-16 step took 7 ms instead of 3 ms). libgomp reads the variable once,
when the pool starts, so this has no effect if something in the process started Numba's
pool before (for instance ``numba.set_num_threads``); set the variable yourself then.
Restoring the environment keeps the setting away from other OpenMP runtimes loaded later
(PyTorch ships its own libgomp).
"""

from __future__ import annotations

import os
import types

__all__ = ["BACKENDS", "KERNEL_NAMES", "default_backend", "get_kernels", "warmup"]

BACKENDS = ("numba", "numpy")
KERNEL_NAMES = (
    "bias_act", "act_backward", "sample_kl", "sample_kl_backward", "bernoulli_nll",
    "gaussian_nll", "sigmoid", "adam_step", "adam_step_outer", "sgd_step", "sum_squares",
)
_loaded = {}


def default_backend():
    """The backend named by ``NPVAE_BACKEND`` / ``NPVAE_DISABLE_NUMBA``, else ``"numba"``."""
    if os.environ.get("NPVAE_DISABLE_NUMBA", "0") not in ("", "0"):
        return "numpy"
    name = os.environ.get("NPVAE_BACKEND", "numba").strip().lower() or "numba"
    if name not in BACKENDS:
        raise ValueError(f"NPVAE_BACKEND={name!r} is not a backend; use one of {BACKENDS}")
    return name


def get_kernels(backend=None):
    """Return a namespace holding the kernels of ``backend`` (default: :func:`default_backend`).

    The namespace's ``name`` attribute says which backend it really is (``numpy`` when
    Numba was asked for but is not installed).
    """
    name = default_backend() if backend is None else str(backend).lower()
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if name not in _loaded:
        if name == "numba":
            try:
                from npvae.kernels import _numba as module
            except ImportError:  # the fallback is free: same names, same math
                return get_kernels("numpy")
            _start_numba_pool()
        else:
            from npvae.kernels import _reference as module
        ns = types.SimpleNamespace(**{k: getattr(module, k) for k in KERNEL_NAMES})
        ns.name = name
        _loaded[name] = ns
    return _loaded[name]


def _start_numba_pool():
    """Start Numba's thread pool with sleeping idle threads; see the module docstring."""
    import numba

    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()  # the user's choice
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        numba.get_num_threads()  # starts the pool (loads libgomp, which reads the variable)
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from the disk cache) every Numba kernel for ``dtypes``.

    Returns the seconds it took, so that benchmarks can report compile time apart from
    run time. Does nothing useful for the numpy backend.
    """
    import time

    import numpy as np

    k = get_kernels("numba")
    start = time.perf_counter()
    for dt in dtypes:
        a = np.ones((2, 4), dtype=dt)
        b = np.zeros(4, dtype=dt)
        for code in range(7):
            k.bias_act(a.copy(), b, code, 0.5)
            k.act_backward(a.copy(), a, code, 0.5, b.copy())
        h = np.zeros((2, 4), dtype=dt)
        noise = np.zeros((2, 2), dtype=dt)
        k.sample_kl(h, noise, noise.copy(), np.zeros(2, dtype=dt))
        k.sample_kl_backward(h, noise, noise, np.zeros(2, dtype=dt), h.copy())
        k.bernoulli_nll(a, a, 1.0, a.copy())
        k.sigmoid(a, a.copy())
        k.gaussian_nll(a, a, b, 1.0, a.copy(), b.copy())
        k.gaussian_nll(a, a, b[:1], 1.0, a.copy(), b[:1].copy())
        p = np.zeros(3, dtype=dt)
        k.adam_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0, 1.0)
        k.sgd_step(p, p.copy(), p.copy(), 1e-3, 0.9, 0.0, False, True, 1.0)
        w = np.zeros((2, 4), dtype=dt)
        k.adam_step_outer(w, a, a, w.copy(), w.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0)
        k.sum_squares(p)
    return time.perf_counter() - start
