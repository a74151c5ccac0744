"""The one capability probe of the platform plumbing: what is in use, and why not.

Every piece of :mod:`npvae.plumbing` is an optimisation that leans on something private or
platform-specific (see docs/architecture.md for the list and the versions tested). A new
NumPy, OpenBLAS, MKL or Numba release can break any of them, so each is tried here, with a
self-test, before the numba backend uses it; a piece that raises, or fails its self-test,
is left off and its plain path is used, with one ``RuntimeWarning`` naming every piece
that failed. ``NPVAE_PLUMBING=0`` turns all of them off, silently. The pieces:

============ ============================================= ===============================
name         what it does                                  plain path when off
============ ============================================= ===============================
ufunc_loop   kernels call NumPy's SIMD ``exp`` loop        Numba's scalar ``exp``
fpmode       Adam's loops run with flush-to-zero (MXCSR)   moments flushed by compares
blas_pool    NumPy's OpenBLAS jobs on Numba's thread pool  OpenBLAS's own threads
gemm         GEMMs as sequential MKL/OpenBLAS calls, split ``np.dot``
cores        thread count fitted to the free cores         the thread count as set
============ ============================================= ===============================

The first two are compiled into the kernels: :func:`kernel_parts` decides them when
:mod:`npvae.kernels._numba` is imported, and :func:`separate_cache` keeps kernels compiled
without them in a disk cache of their own. The others are settled by :func:`start`, when
the numba backend loads (:func:`npvae.kernels.get_kernels`).
"""

from __future__ import annotations

import os
import types
import warnings
from typing import NamedTuple

__all__ = ["Capability", "PIECES", "capabilities", "enabled", "kernel_parts", "start"]

PIECES = ("ufunc_loop", "fpmode", "blas_pool", "gemm", "cores")
ENV = "NPVAE_PLUMBING"
SPIN_COUNT = "3000000"  # libgomp spin iterations before an idle thread sleeps: see below

_caps = {}  # name -> Capability
_state = {}  # "parts": the kernels' pieces, "started": (blas_pool, pace)


class Capability(NamedTuple):
    """One piece's state: ``on`` (in use), ``why`` (why not, or a note; None when on
    without one) and ``failed`` (it raised or failed its self-test: warned about)."""

    on: bool
    why: str | None = None
    failed: bool = False


def enabled():
    """False when ``NPVAE_PLUMBING=0``: every piece off, the plain paths only."""
    return os.environ.get(ENV, "1").strip() != "0"


def capabilities():
    """``{piece: Capability}`` for every piece in :data:`PIECES`, probing them (and starting
    Numba's thread pool, as loading the numba backend does) on the first call."""
    start()
    return {name: _caps[name] for name in PIECES}


def _attempt(name, probe):
    """Run ``probe() -> (result or None, why not)``; record the piece; return the result.
    A ``why`` that is a :class:`~npvae.plumbing.openblas.LoadFailure` counts as a failure
    (warned about) even when there is a result."""
    from npvae.plumbing.openblas import LoadFailure

    if not enabled():
        _caps[name] = Capability(False, f"{ENV}=0")
        return None
    try:
        result, why = probe()
    except Exception as exc:  # whatever a new release raises: the plain path, one warning
        _caps[name] = Capability(False, f"{type(exc).__name__}: {exc}", failed=True)
        return None
    _caps[name] = Capability(result is not None, why, isinstance(why, LoadFailure))
    return result


# ----------------------------------------------------------------- compiled into the kernels
def kernel_parts():
    """The pieces :mod:`npvae.kernels._numba` compiles with, decided once: a namespace with
    ``call_unary``, ``unary_loop`` (:mod:`~npvae.plumbing.ufunc_loop` or its stand-in),
    ``flush_to_zero``, ``restore_fp_mode``, ``ftz`` (:mod:`~npvae.plumbing.fpmode` or
    stand-ins), ``matmul``, ``thread_count`` (:mod:`~npvae.plumbing.gemm`, or None: the
    kernels then use ``np.dot`` and Numba's count) and ``tag``, the stand-ins in use
    ("" if none)."""
    if "parts" not in _state:
        from npvae.plumbing import plain

        parts = types.SimpleNamespace(
            call_unary=plain.call_unary, unary_loop=plain.unary_loop,
            flush_to_zero=plain.flush_to_zero, restore_fp_mode=plain.restore_fp_mode,
            ftz=plain.FTZ, matmul=None, thread_count=None, tag="")
        loop = _attempt("ufunc_loop", _probe_ufunc_loop)
        if loop is not None:
            parts.call_unary, parts.unary_loop = loop.call_unary, loop.unary_loop
        fp = _attempt("fpmode", _probe_fpmode)
        if fp is not None:
            parts.flush_to_zero, parts.restore_fp_mode, parts.ftz = (
                fp.flush_to_zero, fp.restore_fp_mode, True)
        gemm = _import_gemm()
        if gemm is not None:
            parts.matmul, parts.thread_count = gemm.matmul, gemm.thread_count
        parts.tag = "-".join(n for n, m in (("exp", loop), ("ftz", fp)) if m is None)
        _state["parts"] = parts
    return _state["parts"]


def _probe_ufunc_loop():
    from npvae.plumbing import ufunc_loop

    ufunc_loop.self_test()
    return ufunc_loop, None


def _probe_fpmode():
    import platform

    from npvae.plumbing import fpmode

    if not fpmode.AVAILABLE:
        return None, f"MXCSR is x86's, this is {platform.machine()}"
    fpmode.self_test()
    return fpmode, None


def _import_gemm():
    """The gemm module, or None (recorded as a failure) if it does not even import."""
    if not enabled():
        _caps["gemm"] = Capability(False, f"{ENV}=0")
        return None
    try:
        from npvae.plumbing import gemm
    except Exception as exc:
        _caps["gemm"] = Capability(False, f"{type(exc).__name__}: {exc}", failed=True)
        return None
    return gemm


def separate_cache(namespace, tag):
    """Point the disk cache of the Numba functions in ``namespace`` (a module's globals) at
    a folder of its own for the stand-ins ``tag``: Numba keys its cache by the function's
    source file, not by the globals it was compiled with, so kernels compiled with the
    stand-ins would otherwise be loaded where the real pieces are wanted (and back)."""
    if not tag:
        return
    import numba
    from numba.core.caching import FunctionCache
    from numba.core.registry import CPUDispatcher

    old = numba.config.CACHE_DIR
    here = os.path.dirname(os.path.abspath(namespace["__file__"]))
    numba.config.CACHE_DIR = os.path.join(old or os.path.join(here, "__pycache__"),
                                          f"npvae-plain-{tag}")
    try:
        for fn in list(namespace.values()):
            if isinstance(fn, CPUDispatcher) and isinstance(fn._cache, FunctionCache):
                fn.enable_caching()  # a new cache, in the folder set just now
    finally:
        numba.config.CACHE_DIR = old


# ---------------------------------------------------------------------- settled at start
class NoPool:
    """Stand-in for :class:`~npvae.plumbing.blas_pool.BlasPool` where none is installed."""

    available = active = False
    library = None

    def uninstall(self):
        pass


def start():
    """Start Numba's thread pool and settle the runtime pieces, once; warn once about
    every piece that failed. Returns ``(blas_pool, pace)``: a BlasPool (or :class:`NoPool`)
    and the :class:`~npvae.plumbing.cores.ThreadPacer` (or None) of each training step."""
    if "started" not in _state:
        parts = kernel_parts()
        pool = _start_pool()
        pace = None
        if parts.matmul is not None:  # the module imported (else: recorded as failed)
            from npvae.plumbing import gemm

            if enabled() and gemm.choice() in ("mkl", "openblas"):
                gemm.provider()  # asked for by name: an error if it cannot be used
            if _attempt("gemm", _probe_gemm) is None:  # off or failed: every product np.dot
                gemm.disable(_caps["gemm"].why)
        if _caps["gemm"].on:
            pace = _attempt("cores", _probe_cores)
        else:  # np.dot's results depend on OpenBLAS's thread count: keep the count fixed
            _caps["cores"] = Capability(False, f"{ENV}=0" if not enabled() else
                                        "GEMMs through np.dot")
        _state["started"] = (pool, pace)
        _warn()
    return _state["started"]


def _start_pool():
    """Start Numba's thread pool; return the BlasPool installed (or a NoPool).

    One pool for BLAS and kernels (when the callback can be installed): idle threads spin
    for tens of milliseconds, as OpenBLAS's own do; with libgomp's default (300,000) a GEMM
    after 0.2-3 ms of serial work took 1.1-1.6 ms instead of 0.8-0.9 (measured: the
    sleeping thread woke late). Two pools: idle threads must sleep at once
    (``OMP_WAIT_POLICY=PASSIVE``), or they hold the core the other needs. A user's
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is kept; the environment is put back after.
    """
    import numba

    found = _attempt("blas_pool", _find_openblas)
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()  # the user's choice
    else:
        key, value = ("GOMP_SPINCOUNT", SPIN_COUNT) if found else ("OMP_WAIT_POLICY", "PASSIVE")
        os.environ[key] = value
        try:
            numba.get_num_threads()  # starts the pool (loads libgomp, which reads it)
        finally:
            del os.environ[key]
    if found is None:
        return NoPool()
    pool = _attempt("blas_pool", lambda: _install_blas_pool(found))
    return pool if pool is not None else NoPool()


def _find_openblas():
    from npvae.plumbing.openblas import numpy_openblas

    if os.environ.get("NPVAE_BLAS_POOL", "1") == "0":
        return None, "NPVAE_BLAS_POOL=0"
    found = numpy_openblas()
    return found, None if found else "NumPy's BLAS is not the OpenBLAS its wheel bundles"


def _install_blas_pool(found):
    from npvae.plumbing import blas_pool

    pool = blas_pool.install(found)  # compiles (or loads) the callback
    if not pool.active:
        return None, "Numba's threading layer is not OpenMP"
    try:
        blas_pool.self_test()
    except BaseException:
        pool.uninstall()
        raise
    return pool, None


def _probe_gemm():
    from npvae.plumbing import gemm
    from npvae.plumbing.openblas import LoadFailure

    found, why = gemm.provider()  # NPVAE_GEMM=mkl or openblas that cannot be used: raises
    if found is not None:
        gemm.self_test()
    failures = gemm.failed_loads()  # a library that is there but would not load
    return found, LoadFailure("; ".join(failures)) if failures else why


def _probe_cores():
    from npvae.plumbing import cores

    if not cores.enabled():
        return None, "NPVAE_ADAPT_THREADS=0"
    if cores.read_cpu_times(cores.allowed_cpus() or [0]) is None:
        return None, "no /proc/stat to read the cores' load from"
    return cores.ThreadPacer(), None


def _warn():
    failed = {name: cap for name, cap in _caps.items() if cap.failed}
    if failed:
        warnings.warn(
            "npvae: platform speed-ups that failed on this system and are off (results are "
            "the same, the plain paths are slower): "
            + "; ".join(f"{name}: {cap.why}" for name, cap in failed.items())
            + f". Set {ENV}=0 to use the plain paths without this warning, and please "
            "report it with the versions of NumPy, Numba and your BLAS",
            RuntimeWarning, stacklevel=4)
