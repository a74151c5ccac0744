"""NumPy's OpenBLAS threads, run on Numba's thread pool.

A training step alternates GEMMs (NumPy's OpenBLAS, on its own pthreads) with npvae's
parallel kernels (Numba's OpenMP threads). Two pools on two cores fight: each pool's idle
threads spin after their work, on the core the other pool needs next. Measured on the
2-core VM at batch 128: Adam took 1.45 ms inside a step against 0.6 ms alone, because an
OpenBLAS worker was still spinning on the second core.

OpenBLAS (0.3.27 and newer) lets a program run its parallel jobs itself:
``openblas_set_threads_callback_function(cb)`` makes every threaded BLAS call hand its
``numjobs`` jobs to ``cb(sync, dojob, numjobs, size, jobs, data)``, which must run
``dojob(i, jobs + i * size, data)`` for each ``i``, *all at the same time* (the jobs of a
GEMM wait for one another). :func:`_callback` does so in a Numba ``prange``, one job per
thread, so GEMMs and npvae's kernels share one pool of threads that never compete.

The setting is process-wide: once installed (:func:`install`, when the numba backend
loads) every threaded BLAS call of NumPy runs here. Hence:

* BLAS calls from several Python threads run one at a time (a lock in the callback):
  concurrent calls share OpenBLAS's per-thread buffers, and gave wrong products without it.
* If the calling thread asked Numba for fewer threads than the call has jobs, the count is
  raised for that call: jobs run one after another would wait on each other forever.
* A forked child gets OpenBLAS's own threads back (OpenMP cannot be used after a fork).
* It is used only for an OpenBLAS bundled with NumPy (a wheel's ``numpy.libs``) that has
  the callback, with Numba's ``omp`` threading layer, and unless ``NPVAE_BLAS_POOL=0``.
  A shared system OpenBLAS is left alone: SciPy may call it from inside a parallel loop.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import cfunc, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_CACHE = os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0"


def _declare(builder, name, ret, args):
    """A C function that the JIT resolves by name at load time (so the code can be cached,
    which a ctypes pointer baked into it would prevent)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


@intrinsic
def _call_job(typingctx, dojob, job_id, job, data):
    """Call the C function at address ``dojob`` as ``void dojob(int, void *, int)``."""
    def codegen(context, builder, signature, args):
        voidptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(32), voidptr, ir.IntType(32)])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [args[1], builder.inttoptr(args[2], voidptr), args[3]])
        return context.get_dummy_value()

    return types.void(types.intp, types.intc, types.intp, types.intc), codegen


@intrinsic
def _threads(typingctx):
    """Numba's thread count for the calling thread (its C ``get_num_threads``)."""
    def codegen(context, builder, signature, args):
        return builder.call(_declare(builder, "get_num_threads", ir.IntType(32), []), [])

    return types.intc(), codegen


@intrinsic
def _set_threads(typingctx, n):
    def codegen(context, builder, signature, args):
        fn = _declare(builder, "set_num_threads", ir.VoidType(), [ir.IntType(32)])
        builder.call(fn, [args[0]])
        return context.get_dummy_value()

    return types.void(types.intc), codegen


def _lock_word(module):
    """A 32-bit lock word, 0 when free, private to the module of the function using it."""
    i32 = ir.IntType(32)
    gv = module.globals.get("npvae_blas_lock")
    if gv is None:
        gv = ir.GlobalVariable(module, i32, "npvae_blas_lock")
        gv.initializer = ir.Constant(i32, 0)
        gv.linkage = "internal"
    return gv


@intrinsic
def _lock(typingctx):
    """Take the lock: compare-and-swap 0 -> 1 until it succeeds, yielding the CPU between
    tries."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        word = _lock_word(builder.module)
        retry = builder.append_basic_block("lock.retry")
        taken = builder.append_basic_block("lock.taken")
        builder.branch(retry)
        builder.position_at_end(retry)
        pair = builder.cmpxchg(word, ir.Constant(i32, 0), ir.Constant(i32, 1), "acquire",
                               "monotonic")
        ok = builder.extract_value(pair, 1)
        with builder.if_then(builder.not_(ok)):
            builder.call(_declare(builder, "sched_yield", i32, []), [])
        builder.cbranch(ok, taken, retry)
        builder.position_at_end(taken)
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _unlock(typingctx):
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        builder.store_atomic(ir.Constant(i32, 0), _lock_word(builder.module), "release", 4)
        return context.get_dummy_value()

    return types.void(), codegen


@njit(parallel=True, nogil=True, cache=_CACHE)
def _run_parallel(dojob, numjobs, size, jobs, data):
    for i in prange(numjobs):  # numjobs <= threads: static scheduling gives one job each
        _call_job(dojob, np.intc(i), jobs + i * size, data)


# void cb(int sync, dojob, int numjobs, size_t size, void *jobs, int data); pointers and
# size_t are taken as intp, which has their size and calling convention on 64-bit systems
_SIG = types.void(types.intc, types.intp, types.intc, types.intp, types.intp, types.intc)


@cfunc(_SIG, nopython=True, cache=_CACHE)
def _callback(sync, dojob, numjobs, size, jobs, data):
    """Run OpenBLAS's ``numjobs`` jobs at the same time, one per pool thread."""
    _lock()
    if numjobs == 1:
        _call_job(dojob, np.intc(0), jobs, data)
    else:
        have = _threads()
        if have < numjobs:
            _set_threads(numjobs)  # OpenMP makes the team this large
        _run_parallel(dojob, numjobs, size, jobs, data)
        if have < numjobs:
            _set_threads(have)
    _unlock()


class BlasPool:
    """What :func:`install` did: ``available`` (the callback could be used here),
    ``active`` (it is installed now) and ``library`` (the OpenBLAS it went into)."""

    def __init__(self, found=None):
        self.library = found[0] if found else None
        self._set = found[1] if found else None
        self.available = found is not None
        self.active = False

    def uninstall(self):
        """Give OpenBLAS its own threads back."""
        if self.active:
            self._set(None)
            self.active = False

    def _install(self):
        self._set(_callback.address)
        self.active = True


def self_test():
    """Raise RuntimeError unless threaded NumPy GEMMs, whose jobs the callback runs, give
    the exact products of small integers in both precisions."""
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        a = rng.integers(-4, 5, (192, 160)).astype(dt)
        b = rng.integers(-4, 5, (160, 224)).astype(dt)
        if not np.array_equal(np.dot(a, b), a.astype(np.int64) @ b.astype(np.int64)):
            raise RuntimeError(f"NumPy's {np.dtype(dt)} GEMM on Numba's pool gave wrong "
                               "products")


def install(found):
    """Install the callback into the library ``found`` describes
    (:func:`npvae.plumbing.openblas.numpy_openblas`); return a :class:`BlasPool`."""
    import numba

    if found is None or numba.threading_layer() != "omp":
        return BlasPool()
    pool = BlasPool(found)
    pool._install()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=pool.uninstall)
    return pool
