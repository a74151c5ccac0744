"""Kernel backends: ``numba`` (compiled, the default) and ``numpy`` (the readable reference).

Both expose the same functions with the same signatures (see
:mod:`npvae.kernels._reference` for the math). Choose one for the whole library with the
environment variable ``NPVAE_BACKEND=numpy`` (or ``NPVAE_DISABLE_NUMBA=1``), or per model
with ``VAE(backend="numpy")``. If Numba cannot be imported, ``numba`` falls back to
``numpy``. Importing this module compiles nothing: Numba compiles each kernel on its first
call and caches the machine code on disk (``NPVAE_NUMBA_CACHE=0`` turns that off).

Threads. A training step alternates GEMMs (NumPy's BLAS) with npvae's parallel kernels
(Numba's OpenMP pool). With two pools on two cores, the idle threads of one spin on the core
the other needs next. So loading the ``numba`` backend makes it one pool: when NumPy's BLAS
is the OpenBLAS its wheel bundles, npvae hands OpenBLAS's parallel jobs to Numba's pool
(:mod:`npvae.plumbing.blas_pool`; for the whole process, ``NPVAE_BLAS_POOL=0`` turns it
off), and the pool starts with ``GOMP_SPINCOUNT=3000000``: its idle threads spin for tens of
milliseconds, as OpenBLAS's own do, so that the next GEMM finds them awake. Otherwise
Numba's pool is started with ``OMP_WAIT_POLICY=PASSIVE``, so that its threads sleep when a
loop ends instead of holding the core OpenBLAS needs (on 2 cores a batch-16 step took 7 ms
instead of 3 ms). Neither is done if ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set, and
the environment is put back afterwards, away from OpenMP runtimes loaded later (PyTorch
ships its own libgomp). libgomp reads the variable once, when the pool starts, so it has
no effect if something started Numba's pool before (``numba.set_num_threads``, say).
"""

from __future__ import annotations

import os
import types

__all__ = ["BACKENDS", "KERNEL_NAMES", "default_backend", "gemm_info", "get_kernels", "warmup"]

BACKENDS = ("numba", "numpy")
KERNEL_NAMES = (
    "matmul", "bias_act", "act_backward", "sample_kl", "sample_kl_backward", "bernoulli_nll",
    "gaussian_nll", "bernoulli_nll_rows", "gaussian_nll_rows", "sigmoid", "adam_step",
    "adam_step_outer", "sgd_step", "sum_squares", "normal_log_density", "leapfrog_kick",
    "leapfrog_drift", "leapfrog_kick_drift", "select_rows",
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
            pool = _start_numba_pool()
        else:
            from npvae.kernels import _reference as module
            pool = _NoPool()
        ns = types.SimpleNamespace(**{k: getattr(module, k) for k in KERNEL_NAMES})
        ns.name = name
        ns.blas_pool = pool
        ns.pace = _pacer() if name == "numba" else None
        _loaded[name] = ns
    return _loaded[name]


def gemm_info(backend=None):
    """What runs the GEMMs of ``backend`` (default: :func:`default_backend`): a dict with
    ``provider`` (``"mkl"``, ``"openblas"`` or ``"numpy"``), ``detail`` and ``why`` (why
    ``np.dot``, or None).

    The numpy backend always uses ``np.dot``. The numba backend splits each product over
    Numba's threads, one sequential BLAS call per block: Intel MKL on an Intel CPU when the
    ``mkl`` wheel is installed (``pip install "npvae[mkl]"``), else the OpenBLAS NumPy
    bundles; ``NPVAE_GEMM`` chooses (see :mod:`npvae.plumbing.gemm`).
    """
    if get_kernels(backend).name == "numpy":
        return {"provider": "numpy", "detail": "np.dot (NumPy's BLAS)",
                "why": "the numpy backend is the reference"}
    from npvae.plumbing import gemm as _gemm

    return _gemm.info()


class _NoPool:
    """Stand-in for :class:`~npvae.plumbing.blas_pool.BlasPool` where none is installed."""

    available = active = False
    library = None

    def uninstall(self):
        pass


def _pacer():
    """The :class:`~npvae.plumbing.cores.ThreadPacer` that fits the thread count of each
    training step to the cores other processes leave free, or None: off
    (``NPVAE_ADAPT_THREADS=0``), or GEMMs through ``np.dot``, whose results depend on
    OpenBLAS's thread count (npvae's split GEMM's do not: see :mod:`npvae.plumbing.cores`)."""
    from npvae.plumbing import cores, gemm

    if not cores.enabled() or gemm.provider()[0] is None:
        return None
    return cores.ThreadPacer()


SPIN_COUNT = "3000000"  # libgomp spin iterations before an idle thread sleeps: see below


def _start_numba_pool():
    """Start Numba's thread pool (see the module docstring); return what
    :func:`npvae.plumbing.blas_pool.install` returned."""
    import numba

    from npvae.plumbing.openblas import numpy_openblas

    found = numpy_openblas() if os.environ.get("NPVAE_BLAS_POOL", "1") != "0" else None
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()  # the user's choice
        return _blas_pool(found)
    # One pool for BLAS and kernels: idle threads spin for tens of milliseconds, as
    # OpenBLAS's own do; with libgomp's default (300,000) a GEMM after 0.2-3 ms of serial
    # work took 1.1-1.6 ms instead of 0.8-0.9 (measured: the sleeping thread wakes late).
    # Two pools: idle threads must sleep at once, or they hold the core the other needs.
    key, value = ("GOMP_SPINCOUNT", SPIN_COUNT) if found else ("OMP_WAIT_POLICY", "PASSIVE")
    os.environ[key] = value
    try:
        numba.get_num_threads()  # starts the pool (loads libgomp, which reads the variable)
    finally:
        del os.environ[key]
    return _blas_pool(found)


def _blas_pool(found):
    if found is None:
        return _NoPool()
    from npvae.plumbing.blas_pool import install  # compiles (or loads) the callback

    return install(found)


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from the disk cache) every Numba kernel for ``dtypes``.

    Returns the seconds it took, so that benchmarks can report compile time apart from
    run time. Does nothing useful for the numpy backend.
    """
    import time

    import numpy as np

    from npvae.kernels._numba import PARALLEL_MIN

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
        r2, nll = np.ones(2, dtype=dt), np.zeros(2)
        k.bernoulli_nll_rows(a, a, r2, a.copy(), nll)
        k.gaussian_nll_rows(a, a, b, r2, a.copy(), b.copy(), nll)
        k.gaussian_nll_rows(a, a, b[:1], r2, a.copy(), b[:1].copy(), nll)
        p = np.zeros(3, dtype=dt)
        k.adam_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0, 1.0)
        k.sgd_step(p, p.copy(), p.copy(), 1e-3, 0.9, 0.0, False, True, 1.0)
        w = np.zeros((2, 4), dtype=dt)
        k.adam_step_outer(w, a, a, w.copy(), w.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0)
        k.sum_squares(p)
        zz, c1, r1 = a[:, :2].copy(), np.zeros(1), np.zeros(2)
        k.normal_log_density(zz, zz[:1], zz[:1], c1, r1, zz.copy())
        k.leapfrog_kick(zz, zz.copy(), zz.copy(), 0.5, zz[:1].copy())
        k.leapfrog_drift(zz, zz.copy(), zz[:1].copy())
        k.leapfrog_kick_drift(zz, zz.copy(), zz.copy(), zz.copy(), 0.5, zz[:1].copy(),
                              zz[:1].copy())
        k.select_rows(zz, zz.copy(), np.ones(2, bool))
        # a dense layer's three products: x @ W, x.T @ dy, dy @ W.T (the MKL kernel, if
        # used, compiles once per operand layout)
        out = np.zeros((4, 4), dtype=dt)
        k.matmul(a.T, a, out)
        k.matmul(a, a.T, out[:2, :2].copy())
        k.matmul(a, np.zeros((4, 4), dtype=dt), a.copy())
        # the prange twins, taken from PARALLEL_MIN values (Adam's only with 2+ threads)
        big = np.zeros((8, PARALLEL_MIN // 8), dtype=dt)
        k.bernoulli_nll(big, big, 1.0, big.copy())
        k.bernoulli_nll_rows(big, big, np.ones(8, dtype=dt), big.copy(), np.zeros(8))
        k.sigmoid(big, big.copy())
        p = big.ravel()
        k.adam_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0, 1.0)
        w = big.reshape(256, -1)
        row = np.zeros((1, 256), dtype=dt)
        k.adam_step_outer(w, row, np.zeros((1, w.shape[1]), dtype=dt), w.copy(), w.copy(),
                          1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0)
    return time.perf_counter() - start
