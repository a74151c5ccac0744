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

All of that is platform plumbing (:mod:`npvae.plumbing`): loading the ``numba`` backend
runs its capability probe (:func:`npvae.plumbing.capabilities`), which starts the pool and
keeps each piece only if it works here; ``NPVAE_PLUMBING=0`` turns every piece off.
"""

from __future__ import annotations

import os
import types

__all__ = ["BACKENDS", "KERNEL_NAMES", "default_backend", "gemm_info", "get_kernels", "warmup"]

BACKENDS = ("numba", "numpy")
KERNEL_NAMES = (
    "matmul", "bias_act", "act_backward", "sample_kl", "sample_kl_backward", "bernoulli_nll",
    "gaussian_nll", "bernoulli_nll_rows", "gaussian_nll_rows", "sigmoid", "adam_step",
    "adam_step_outer", "sgd_step", "sum_squares", "iwae_weights", "iwae_backward",
    "bias_act_pre", "normal_log_density", "leapfrog_kick", "leapfrog_drift",
    "leapfrog_kick_drift", "select_rows",
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
        from npvae.plumbing import probe

        if name == "numba":
            try:
                from npvae.kernels import _numba as module
            except ImportError:  # the fallback is free: same names, same math
                return get_kernels("numpy")
            pool, pace = probe.start()  # Numba's pool and the platform plumbing that works
        else:
            from npvae.kernels import _reference as module
            pool, pace = probe.NoPool(), None
        ns = types.SimpleNamespace(**{k: getattr(module, k) for k in KERNEL_NAMES})
        ns.name = name
        ns.blas_pool = pool
        ns.pace = pace
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
    from npvae.plumbing import capabilities

    cap = capabilities()["gemm"]
    if not cap.on:  # off (NPVAE_PLUMBING=0) or failed on this system
        return {"provider": "numpy", "detail": "np.dot (NumPy's BLAS)", "why": cap.why}
    from npvae.plumbing import gemm as _gemm

    return _gemm.info()


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from the disk cache) every Numba kernel for ``dtypes``.

    Returns the seconds it took, so that benchmarks can report compile time apart from
    run time. Does nothing useful for the numpy backend.
    """
    import time

    import numpy as np

    from npvae.kernels._numba import PARALLEL_MIN
    from npvae.kernels.activations import ACTIVATIONS

    k = get_kernels("numba")
    start = time.perf_counter()
    for dt in dtypes:
        a = np.ones((2, 4), dtype=dt)
        b = np.zeros(4, dtype=dt)
        for cls in ACTIVATIONS.values():  # every registered activation
            if cls.needs_pre:
                k.bias_act_pre(a.copy(), b, cls.code, 0.5, a.copy())
            else:
                k.bias_act(a.copy(), b, cls.code, 0.5)
            k.act_backward(a.copy(), a, cls.code, 0.5, b.copy())
        h = np.zeros((2, 4), dtype=dt)
        noise = np.zeros((2, 2), dtype=dt)
        k.sample_kl(h, noise, noise.copy(), np.zeros(2, dtype=dt))
        k.sample_kl_backward(h, noise, noise, np.zeros(2, dtype=dt), h.copy())
        lw = np.zeros(2)
        k.iwae_weights(h, noise, noise, lw, 1.0, 1, lw.copy(), lw.copy(), np.zeros(2, dtype=dt))
        for stop in (False, True):
            k.iwae_backward(h, noise, noise, noise, noise[0], noise[0], 1.0, stop, h.copy())
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
