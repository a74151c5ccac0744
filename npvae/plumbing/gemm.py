r"""``out = a @ b`` through a sequential BLAS GEMM, split over Numba's thread pool (numba
backend).

The reference is ``np.dot(a, b, out=out)`` (:func:`npvae.kernels._reference.matmul`). Here
a product is cut into one block of output columns per thread (rows when the output is
taller than wide), and each thread makes one single-threaded ``cblas_?gemm`` call on its
block, inside a Numba ``prange``: the GEMMs run on the same pool of threads as npvae's
kernels, so no second pool spins on the cores. Blocks of columns start at multiples of 16,
so every thread's part of ``out`` and ``b`` stays 64-byte aligned. With OpenBLAS, products
of 4 to 32 rows are cut into narrow blocks of a fixed width instead (``NARROW``): its
sequential kernels ran those shapes up to 5x faster 32 or 64 columns at a time.

The BLAS (the *provider*) is Intel MKL when its wheel is installed and the CPU is Intel's
(:mod:`npvae.plumbing.mkl`; MKL runs its slow generic code on other CPUs: on an AMD EPYC
(Zen 5) its sgemm reached 190 GFLOP/s on 2 threads where NumPy's OpenBLAS reached 370), and
otherwise a copy of OpenBLAS of npvae's own (the ``scipy-openblas32`` wheel, a dependency),
loaded apart from NumPy's and set to one thread, so that each call computes its block on
the calling thread (:mod:`npvae.plumbing.openblas`). Either way a block is computed whole by
one sequential call, whose sums over the inner dimension do not depend on the block's
width: the results are bit-identical on any number of threads (tested), which lets the
thread count follow the free cores (:mod:`npvae.plumbing.cores`).

Operands are passed to BLAS as they lie in memory: a row-major (C-ordered) operand as is,
a column-major one (a transposed view such as ``x.T`` or ``W.T``) with ``trans``, so
nothing is copied. In a forked child each GEMM is one call (OpenMP cannot be used after a
fork). Anything BLAS cannot take directly (other dtypes, strided views,
``out`` overlapping an input, empty or huge dimensions) goes to ``np.dot``.

``NPVAE_GEMM`` chooses: ``auto`` (the default: MKL on an Intel CPU if installed, else
OpenBLAS), ``mkl`` or ``openblas`` (an error if it cannot be used), or ``numpy``
(``np.dot``, whose results depend on OpenBLAS's thread count).
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic

from npvae.plumbing import mkl as _mkl
from npvae.plumbing import openblas as _openblas

_CACHE = os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0"
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values
ALIGN = 16  # elements: a column block's first column (64 bytes of float32)
# m * n * k up to which a product is one call, not split, by provider: with MKL on a Xeon
# one call beat a split 784x400 GEMV inside a step; with OpenBLAS on an EPYC the split one
# won (inference at batch 1 44.5 -> 32.7 us, the training step 195 -> 185 us)
SERIAL_MAX = {"mkl": 1 << 19, "openblas": 1 << 17}
# rows -> block width of a split product with that many rows (at most), by provider. On
# the EPYC, OpenBLAS 0.3.34's sequential sgemm on 4-16 rows of the model's 784x400 and
# 400x784 products (either layout) took 0.5-0.9x the time in blocks of 64 columns that it
# took in two blocks of ~200 or ~400, and down to 0.2x for 4-8 rows with a transposed
# operand; on 17-32 rows blocks of 32 won (0.7-0.85x), and from 48 rows two blocks won
# (`python bench/gemm_widths.py`; bench/README.md's log). MKL was tuned on a Xeon with the
# two blocks and keeps them.
NARROW = {"mkl": (), "openblas": ((3, 0), (16, 64), (32, 32))}
INT32_MAX = 2**31 - 1
CHOICES = ("auto", "mkl", "openblas", "numpy")

_state = {}  # "blas": Mkl, Cblas or None, "why": str or None, "choice": str


@intrinsic
def _call_gemm(typingctx, fn, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc):
    """Call ``cblas_?gemm`` at address ``fn`` (row-major, ``beta = 0``, LP64: 32-bit
    integers); the precision is the type of ``alpha``. Addresses are integers, so the
    kernel stays cacheable."""
    def codegen(context, builder, signature, args):
        fn_, ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, c_, ldc_ = args
        i32 = ir.IntType(32)
        real = alpha_.type
        ptr = real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [real, ptr, i32, ptr, i32, real, ptr,
                                                               i32])
        f = builder.inttoptr(fn_, fnty.as_pointer())

        def i(v):
            return builder.trunc(v, i32)

        builder.call(f, [ir.Constant(i32, ROW_MAJOR), i(ta), i(tb), i(m_), i(n_), i(k_),
                         alpha_, builder.inttoptr(a_, ptr), i(lda_),
                         builder.inttoptr(b_, ptr), i(ldb_), ir.Constant(real, 0.0),
                         builder.inttoptr(c_, ptr), i(ldc_)])
        return context.get_dummy_value()

    if not isinstance(alpha, types.Float):
        return None
    sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
                     alpha, types.intp, types.intp, types.intp, types.intp, types.intp,
                     types.intp)
    return sig, codegen


@njit(cache=_CACHE, inline="always")
def _layout(rows, cols, s0, s1, item):
    """``(trans, ld)`` for an operand of shape ``(rows, cols)`` and byte strides
    ``(s0, s1)`` as BLAS takes it (row-major, or column-major with ``trans``); trans is 0
    if BLAS cannot take it without a copy."""
    if (s1 == item or cols == 1) and s0 % item == 0:
        ld = s0 // item if rows > 1 else cols
        if ld >= cols:
            return NO_TRANS, ld
    if (s0 == item or rows == 1) and s1 % item == 0:
        ld = s1 // item if cols > 1 else rows
        if ld >= rows:
            return TRANS, ld
    return 0, 0


@njit(cache=_CACHE, inline="always")
def _span(arr):
    """First and one-past-last byte address ``arr`` touches (strides may be negative)."""
    lo = hi = arr.ctypes.data
    for d in range(arr.ndim):
        step = arr.strides[d] * (arr.shape[d] - 1)
        if step < 0:
            lo += step
        else:
            hi += step
    return lo, hi + arr.itemsize


@njit(cache=_CACHE, inline="always")
def _overlap(x, y):
    xlo, xhi = _span(x)
    ylo, yhi = _span(y)
    return xlo < yhi and ylo < xhi


@njit(cache=_CACHE, inline="always")
def _column_block(fn, ta, tb, m, n, k, one, pa, lda, pb, ldb, pc, ldc, item, j0, width):
    """``out[:, j0:j0 + width] = a @ b[:, j0:j0 + width]`` (the last block narrower)."""
    j1 = min(n, j0 + width)
    bj = j0 if tb == NO_TRANS else j0 * ldb
    _call_gemm(fn, ta, tb, m, j1 - j0, k, one, pa, lda, pb + bj * item, ldb,
               pc + j0 * item, ldc)


@njit(parallel=True, cache=_CACHE, nogil=True)
def _gemm(fn, a, b, out, parts, width=0):
    """``out = a @ b`` via the ``cblas_?gemm`` at ``fn``, in ``parts`` blocks over the
    pool, or, if ``width`` > 0 and the product is at least as wide as tall, in blocks of
    ``width`` columns (over the pool if ``parts`` > 1, else one after the other on this
    thread, with no parallel region: a pool of one, a forked child); False (nothing
    written) if BLAS cannot take these operands, for the caller to use ``np.dot``.
    (``parts`` is an argument: calling ``get_num_threads`` in here would keep the kernel
    out of the disk cache.)"""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape[0] != m or out.shape[1] != n:
        return False  # np.dot says what is wrong
    item = a.itemsize
    ta, lda = _layout(m, k, a.strides[0], a.strides[1], item)
    tb, ldb = _layout(k, n, b.strides[0], b.strides[1], item)
    tc, ldc = _layout(m, n, out.strides[0], out.strides[1], item)
    if (ta == 0 or tb == 0 or tc != NO_TRANS or m == 0 or n == 0 or k == 0
            or max(m, n, k, lda, ldb, ldc) > INT32_MAX
            or _overlap(out, a) or _overlap(out, b)):
        return False
    one = a.dtype.type(1)
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    if parts == 1 and (width <= 0 or n < m):
        _call_gemm(fn, ta, tb, m, n, k, one, pa, lda, pb, ldb, pc, ldc)
        return True
    if n >= m:  # blocks of columns: out[:, j0:j1] = a @ b[:, j0:j1]
        if width <= 0:
            width = -(-n // parts)
            width = -(-width // ALIGN) * ALIGN
        blocks = -(-n // width)
        if parts == 1:  # the same blocks, on this thread only
            for t in range(blocks):
                _column_block(fn, ta, tb, m, n, k, one, pa, lda, pb, ldb, pc, ldc, item,
                              t * width, width)
        else:
            for t in prange(blocks):
                _column_block(fn, ta, tb, m, n, k, one, pa, lda, pb, ldb, pc, ldc, item,
                              t * width, width)
    else:  # blocks of rows: out[i0:i1] = a[i0:i1] @ b
        height = -(-m // parts)
        for t in prange(parts):
            i0, i1 = t * height, min(m, (t + 1) * height)
            if i1 > i0:
                ai = i0 * lda if ta == NO_TRANS else i0
                _call_gemm(fn, ta, tb, i1 - i0, n, k, one, pa + ai * item, lda, pb, ldb,
                           pc + i0 * ldc * item, ldc)
    return True


def choice():
    """The ``NPVAE_GEMM`` setting: ``auto``, ``mkl`` or ``numpy``."""
    name = os.environ.get("NPVAE_GEMM", "auto").strip().lower() or "auto"
    if name not in CHOICES:
        raise ValueError(f"NPVAE_GEMM={name!r} is not a choice; use one of {CHOICES}")
    return name


def _find(name):
    """``(provider, why not)`` for ``name`` ("mkl" or "openblas")."""
    return _mkl.load() if name == "mkl" else _openblas.load_private()


def _auto_order():
    """MKL first on Intel's CPUs, where it was 1.2-1.35x faster than OpenBLAS on the
    model's shapes; OpenBLAS first elsewhere (on AMD MKL ran at half OpenBLAS's speed)."""
    return ("mkl", "openblas") if _openblas.cpu_vendor() == "GenuineIntel" else \
        ("openblas", "mkl")


def provider():
    """``(provider, why)``: the BLAS (:class:`~npvae.plumbing.mkl.Mkl` or
    :class:`~npvae.plumbing.openblas.Cblas`) or None, and why none; settled on the first call."""
    if "blas" not in _state:
        name = choice()
        found, why = None, "NPVAE_GEMM=numpy"
        if name in ("mkl", "openblas"):
            found, why = _find(name)
            if found is None:
                fix = ("install it with `pip install mkl`" if name == "mkl" else
                       "install it with `pip install scipy-openblas32`")
                raise RuntimeError(f"NPVAE_GEMM={name}, but it cannot be used: {why}; {fix}, "
                                   "or set NPVAE_GEMM=auto")
        elif name == "auto":
            whys = []
            for each in _auto_order():
                try:
                    found, why = _find(each)
                except Exception as exc:  # a new release's surprise: try the next one
                    found, why = None, _openblas.LoadFailure(f"{type(exc).__name__}: {exc}")
                if found is not None:
                    break
                whys.append(f"{each}: {why}")
                if isinstance(why, _openblas.LoadFailure):
                    _state["failures"] = [*_state.get("failures", []), whys[-1]]
            why = None if found is not None else "; ".join(whys)
        get_num_threads()  # starts Numba's pool: see _thread_count
        if found is not None:
            found.serial_max = SERIAL_MAX[found.name]
            found.widths = _widths(NARROW[found.name])
        _state.update(blas=found, why=why, choice=name, parts=_pool_size())
        if found is not None and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_single_threaded)
    return _state["blas"], _state["why"]


def self_test():
    """Raise RuntimeError unless the split GEMM gives the exact products of small
    integers, in one call and split, for both dtypes and with a transposed operand.
    Does nothing when no sequential BLAS is in use."""
    found = provider()[0]
    if found is None:
        return
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        a = rng.integers(-4, 5, (40, 72)).astype(dt)
        b = rng.integers(-4, 5, (72, 56)).astype(dt)
        want = a.astype(np.int64) @ b.astype(np.int64)  # integer matmul: no BLAS involved
        for x, parts in ((a, 1), (a, max(2, _state["parts"])), (np.asfortranarray(a), 2)):
            out = np.full(want.shape, np.nan, dt)
            if not (_gemm(found.gemm[np.dtype(dt)], x, b, out, parts)
                    and np.array_equal(out, want)):
                raise RuntimeError(f"{found.name}'s {np.dtype(dt)} GEMM gave wrong products "
                                   f"({parts} block(s))")


def failed_loads():
    """The libraries that were there but failed to load or set up (``NPVAE_GEMM=auto``)."""
    provider()
    return list(_state.get("failures", []))


def disable(why):
    """From now on every product goes to ``np.dot`` (``info()`` says ``why``)."""
    provider()
    _state.update(blas=None, why=why)


def info():
    """What runs npvae's GEMMs (numba backend): a dict with ``provider`` ("mkl",
    "openblas" or "numpy"), ``detail`` (the library's version and path) and ``why`` (why
    no sequential BLAS call is used, or None)."""
    found, why = provider()
    if found is None:
        return {"provider": "numpy", "detail": "np.dot (NumPy's BLAS)", "why": why}
    return {"provider": found.name, "detail": f"{found.version} ({found.path}), sequential, "
            "split over Numba's threads", "why": None}


def _widths(table):
    """``widths[m]``: the block width for a split product of ``m`` rows (0: ``parts``
    even blocks), from a ``NARROW`` table of (up to this many rows, width)."""
    widths, lo = [], 0
    for rows, width in table:
        widths += [width] * (rows + 1 - lo)
        lo = rows + 1
    return tuple(widths)


def _pool_size():
    """Blocks per split GEMM: the size of Numba's pool (``NUMBA_NUM_THREADS``, by default
    the number of cores), not the threads in use. Small blocks of OpenBLAS's sequential GEMM
    sum in an order that depends on the block's shape (with 4 rows of 784 x 400, blocks of
    200 columns differ from one block of 400 in the last bits), so the split is fixed
    whatever ``numba.set_num_threads``, ``fit(threads=...)`` or the core governor choose:
    with fewer threads, a thread computes several blocks one after the other."""
    import numba

    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _single_threaded():
    """In a forked child: one call per GEMM, no split. GNU OpenMP aborts a forked child that
    starts a parallel region, and a child may still run small batches, whose kernels are
    serial (:mod:`npvae.plumbing.blas_pool` gives OpenBLAS its own threads back). Products
    in the child may differ from the parent's in the last bits."""
    _state["parts"] = 1


def _thread_count():
    """Numba's ``get_num_threads`` without its per-call check that the pool has started
    (3 us a call; this is 0.6 us). Call it once the pool has started."""
    from numba.np.ufunc import parallel

    count = getattr(parallel, "_get_num_threads", None)
    return count if callable(count) else get_num_threads


def thread_count():
    """Numba's thread count for the calling thread, as ``numba.get_num_threads()``, for
    the Python side of the kernels (which ask on every call)."""
    count = _state.get("count")
    if count is None:
        get_num_threads()  # starts the pool
        count = _state["count"] = _thread_count()
    return count()


def matmul(a, b, out):
    """``out = a @ b`` for 2-D ``a`` (M, K), ``b`` (K, N) and a C-ordered ``out`` (M, N) of
    the same dtype; returns ``out``. The same contract as
    :func:`npvae.kernels._reference.matmul`."""
    found = _state.get("blas", False)
    if found is False:
        found = provider()[0]
    if found is not None and a.ndim == 2 and b.ndim == 2 and out.ndim == 2:
        found.single_threaded()  # threadpoolctl may have given it threads
        fn = found.gemm.get(out.dtype)
        if fn is not None and a.dtype == out.dtype and b.dtype == out.dtype:
            m, widths = a.shape[0], found.widths
            if a.size * b.shape[1] <= found.serial_max:
                parts, width = 1, 0
            else:  # narrow blocks on a pool of one too: the same blocks, the same bits
                parts, width = _state["parts"], widths[m] if m < len(widths) else 0
            if _gemm(fn, a, b, out, parts, width):
                return out
    return np.dot(a, b, out=out)

