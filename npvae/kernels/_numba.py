"""Numba kernels: the loops of :mod:`npvae.kernels._reference`, fused and allocation-free.

Each public function has the name, signature and meaning of its reference twin; read the
reference for the math. Here the work is done in one pass over memory with no
temporaries. How the loops are kept fast:

* ``error_model="numpy"``: with Python's error model every division checks for zero,
  which stops LLVM from vectorising the loop.
* Constants are cast to the array's dtype (``dt(...)``) so float32 loops stay float32.
* ``v ** 0.5`` rather than ``np.sqrt(v)``: only the former vectorises in Numba here.
* Kernels with a floating-point reduction may reassociate it (``fastmath={"reassoc"}``),
  which lets the sum vectorise; no flag that assumes away NaN or inf is ever set, so the
  finiteness checks downstream keep working.
* Large buffers go to a ``prange`` twin of the loop (each thread writes its own
  elements); small ones stay serial, where a thread launch costs more than it saves.
* Numba's pool also runs NumPy's OpenBLAS jobs, so GEMMs and these loops never compete
  for the cores (see :mod:`npvae.kernels` and :mod:`npvae.kernels._blas_pool`).

Compilation is lazy (nothing compiles at import) and cached on disk unless
``NPVAE_NUMBA_CACHE=0``.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import get_num_threads, njit, prange

_CACHE = os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0"
_OPTS = dict(cache=_CACHE, nogil=True, error_model="numpy")
_REDUCE = dict(_OPTS, fastmath={"reassoc", "nsz"})
inline = njit(cache=_CACHE, inline="always", error_model="numpy")

LOG_2PI = float(np.log(2 * np.pi))
# Smallest normal numbers and -log of them, by itemsize: see _reference.flush_limits.
TINY32, TINY64 = float(np.finfo(np.float32).tiny), float(np.finfo(np.float64).tiny)
CUT32, CUT64 = -float(np.log(TINY32)), -float(np.log(TINY64))
PARALLEL_MIN = 1 << 16  # elements; below this a serial loop beats a thread launch


@inline
def _act(a, code, param, zero, one):
    if code == 2:
        return a if a > zero else param * a
    if code == 3:
        return a if a > zero else param * np.expm1(a)
    if code == 4:
        return np.tanh(a)
    if code == 5:
        if a >= zero:
            return one / (one + np.exp(-a))
        e = np.exp(a)
        return e / (one + e)
    return max(a, zero) + np.log1p(np.exp(-abs(a)))  # softplus


@inline
def _dact(y, code, param, zero, one):
    if code == 2:
        return one if y > zero else param
    if code == 3:
        return one if y > zero else y + param
    if code == 4:
        return one - y * y
    if code == 5:
        return y * (one - y)
    return -np.expm1(-y)  # softplus


# ----------------------------------------------------------------------------- dense layers
@njit(**_OPTS)
def bias_act(y, b, code, param):
    dt = y.dtype.type
    zero, one, prm = dt(0), dt(1), dt(param)
    n, h = y.shape
    if code == 1:  # ReLU and identity, the common cases, without the switch in the loop
        for i in range(n):
            for j in range(h):
                a = y[i, j] + b[j]
                y[i, j] = a if a > zero else zero
    elif code == 0:
        for i in range(n):
            for j in range(h):
                y[i, j] += b[j]
    else:
        for i in range(n):
            for j in range(h):
                y[i, j] = _act(y[i, j] + b[j], code, prm, zero, one)


@njit(**_OPTS)
def act_backward(dy, y, code, param, db):
    dt = dy.dtype.type
    zero, one, prm = dt(0), dt(1), dt(param)
    n, h = dy.shape
    for j in range(h):
        db[j] = zero
    if code == 1:
        for i in range(n):
            for j in range(h):
                g = dy[i, j] if y[i, j] > zero else zero
                dy[i, j] = g
                db[j] += g
    elif code == 0:
        for i in range(n):
            for j in range(h):
                db[j] += dy[i, j]
    else:
        for i in range(n):
            for j in range(h):
                g = dy[i, j] * _dact(y[i, j], code, prm, zero, one)
                dy[i, j] = g
                db[j] += g


# ------------------------------------------------------------ reparameterisation and KL
_scratch = threading.local()


def _buffer(key, shape, dtype):
    """A per-thread scratch array named ``key``, reused while the shape stays the same."""
    buf = getattr(_scratch, key, None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype)
        setattr(_scratch, key, buf)
    return buf


# Each kernel runs the sample loop and the per-(i, j) loop separately: a store into z
# inside the KL accumulation made the combined loop 8x slower (measured at 512 x 20).
# ``std`` is exp(logvar / 2) from _std, or an empty array: then the kernel takes the exp.
@inline
def _sd(h, std, i, j, zdim):
    if std.shape[0] == 0:
        return np.exp(h.dtype.type(0.5) * h[i, zdim + j])
    return std[i, j]


@njit(**_OPTS)
def _sample_kl(h, std, noise, z, kl_col):
    dt = h.dtype.type
    half, one = dt(0.5), dt(1)
    n = h.shape[0]
    zdim = h.shape[1] // 2
    reps = noise.shape[0] // n
    for r in range(reps):
        for i in range(n):
            for j in range(zdim):
                z[r * n + i, j] = h[i, j] + _sd(h, std, i, j, zdim) * noise[r * n + i, j]
    for j in range(zdim):
        kl_col[j] = 0
    for i in range(n):
        for j in range(zdim):
            mu, sd = h[i, j], _sd(h, std, i, j, zdim)
            kl_col[j] += half * (mu * mu + sd * sd - one - h[i, zdim + j])


@njit(**_OPTS)
def _sample_kl_backward(h, std, noise, dz, w, dh):
    dt = h.dtype.type
    half, one = dt(0.5), dt(1)
    n = h.shape[0]
    zdim = h.shape[1] // 2
    reps = noise.shape[0] // n
    for i in range(n):  # the KL's share, then each sample's
        for j in range(zdim):
            sd = _sd(h, std, i, j, zdim)
            dh[i, j] = w[j] * h[i, j]
            dh[i, zdim + j] = w[j] * half * (sd * sd - one)
    for r in range(reps):
        for i in range(n):
            g, e = dz[r * n + i], noise[r * n + i]  # row views
            dmu, dlv = dh[i, :zdim], dh[i, zdim:]
            for j in range(zdim):
                dmu[j] += g[j]
                dlv[j] += g[j] * e[j] * half * _sd(h, std, i, j, zdim)


STD_NUMPY_MIN = 4096  # values; below, the kernels take exp themselves (cold-cache crossover)


def _std(h):
    """``exp(logvar / 2)`` for the sampling kernels: for large batches through NumPy's
    SIMD ``exp`` (Numba's is scalar libm) into a reused buffer; for small ones an empty
    array, which tells the kernel to compute it (two ufunc calls cost more there)."""
    zdim = h.shape[1] // 2
    if h.shape[0] * zdim < STD_NUMPY_MIN:
        return _buffer("std0", (0, zdim), h.dtype)
    std = _buffer("std", (h.shape[0], zdim), h.dtype)
    np.multiply(h[:, zdim:], 0.5, out=std)
    with np.errstate(over="ignore"):  # an infinite std gives an infinite loss, reported there
        return np.exp(std, out=std)


def sample_kl(h, noise, z, kl_col):
    _sample_kl(h, _std(h), noise, z, kl_col)


def sample_kl_backward(h, noise, dz, w, dh):
    _sample_kl_backward(h, _std(h), noise, dz, w, dh)


# --------------------------------------------------------------------------- likelihoods
ROW_CHUNKS = 8  # row blocks of a parallel loop: fixed, so sums do not depend on the threads


def _row_chunks(y):
    """Row blocks for the ``prange`` twin of a kernel over ``y``, or 0: stay serial."""
    return min(y.shape[0], ROW_CHUNKS) if y.size >= PARALLEL_MIN else 0


@njit(**_OPTS)
def _neg_abs_rows(logits, t, lo, hi):
    """``t = -|l|``, or ``-inf`` past the cut so that ``exp`` gives an exact 0."""
    cut = logits.dtype.type(CUT32) if logits.itemsize == 4 else logits.dtype.type(CUT64)
    logits, t = logits[lo:hi], t[lo:hi]
    rows, d = logits.shape
    for r in range(rows):
        for j in range(d):
            a = abs(logits[r, j])
            t[r, j] = -a if a < cut else -np.inf


@njit(parallel=True, **_OPTS)
def _neg_abs_parallel(logits, t, chunks):
    n = logits.shape[0]
    for c in prange(chunks):
        _neg_abs_rows(logits, t, c * n // chunks, (c + 1) * n // chunks)


def _neg_abs_logits(logits, t):
    chunks = _row_chunks(logits)
    if chunks:
        _neg_abs_parallel(logits, t, chunks)
    else:
        _neg_abs_rows(logits, t, 0, logits.shape[0])


LOG1P_CHUNK = 512  # factors per product: 512 factors in [1, 2] stay below 2^512


@njit(**_REDUCE)
def _bernoulli_rows(logits, x, t, scale, dlogits, lo, hi):
    """From ``t = e^{-|l|}``, for rows ``lo:hi``: write ``dlogits = scale (sigmoid(l) - x)``
    and return their NLL, ``sum(max(l, 0) - x l) + sum(log1p(t))``.

    The log part is taken as ``log(prod(1 + t))`` over chunks of a row, the product in
    float64 (one ``log`` per chunk instead of one ``log1p`` per value; the product's
    relative error, about 1e-16 per factor, is far below float32's rounding)."""
    dt = logits.dtype.type
    zero, one, s = dt(0), dt(1), dt(scale)
    d = logits.shape[1]
    n = x.shape[0]
    total = 0.0
    for r in range(lo, hi):
        xr = x[r % n]
        row = dt(0)
        logs = 0.0
        for j0 in range(0, d, LOG1P_CHUNK):
            j1 = min(d, j0 + LOG1P_CHUNK)
            lc, tc, xc, gc = logits[r, j0:j1], t[r, j0:j1], xr[j0:j1], dlogits[r, j0:j1]
            prod = 1.0
            for j in range(lc.shape[0]):
                lg, tj = lc[j], tc[j]
                inv = one / (one + tj)
                sig = inv if lg >= zero else tj * inv
                gc[j] = s * (sig - xc[j])
                row += max(lg, zero) - xc[j] * lg
                prod *= 1.0 + np.float64(tj)
            logs += np.log(prod)
        total += row + logs
    return total


@njit(parallel=True, **_OPTS)
def _bernoulli_parallel(logits, x, t, scale, dlogits, parts):
    rows, chunks = logits.shape[0], parts.shape[0]
    for c in prange(chunks):
        parts[c] = _bernoulli_rows(logits, x, t, scale, dlogits, c * rows // chunks,
                                   (c + 1) * rows // chunks)
    total = 0.0
    for c in range(chunks):  # the blocks' sums in order
        total += parts[c]
    return total


def bernoulli_nll(logits, x, scale, dlogits):
    # Numba calls scalar libm for exp, ~20x slower here than NumPy's SIMD ufunc; so exp
    # is a ufunc pass into a reused buffer and the rest is fused in Numba.
    t = _buffer("t", logits.shape, logits.dtype)
    _neg_abs_logits(logits, t)
    np.exp(t, out=t)  # t = e^{-|l|}
    chunks = _row_chunks(logits)
    if chunks:
        return _bernoulli_parallel(logits, x, t, scale, dlogits,
                                   _buffer("nll_parts", (chunks,), np.float64))
    return _bernoulli_rows(logits, x, t, scale, dlogits, 0, logits.shape[0])


@njit(**_OPTS)
def _sigmoid_rows(logits, t, lo, hi):
    """In place, rows ``lo:hi``: ``t = e^{-|l|}`` becomes ``sigmoid(l)``."""
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    logits, t = logits[lo:hi], t[lo:hi]
    rows, d = logits.shape
    for r in range(rows):
        for j in range(d):
            tj = t[r, j]
            t[r, j] = one / (one + tj) if logits[r, j] >= zero else tj / (one + tj)


@njit(parallel=True, **_OPTS)
def _sigmoid_parallel(logits, t, chunks):
    n = logits.shape[0]
    for c in prange(chunks):
        _sigmoid_rows(logits, t, c * n // chunks, (c + 1) * n // chunks)


def sigmoid(logits, out):
    _neg_abs_logits(logits, out)
    np.exp(out, out=out)  # NumPy's SIMD exp, as in bernoulli_nll
    chunks = _row_chunks(logits)
    if chunks:
        _sigmoid_parallel(logits, out, chunks)
    else:
        _sigmoid_rows(logits, out, 0, logits.shape[0])
    return out


@njit(**_REDUCE)
def gaussian_nll(mean, x, logvar, scale, dmean, dlogvar):
    dt = mean.dtype.type
    half, one, s, log2pi = dt(0.5), dt(1), dt(scale), dt(LOG_2PI)
    rows, d = mean.shape
    n = x.shape[0]
    shared = logvar.shape[0] == 1
    for j in range(dlogvar.shape[0]):
        dlogvar[j] = 0
    total = 0.0
    for r in range(rows):
        i = r % n
        row = dt(0)
        for j in range(d):
            v = logvar[0] if shared else logvar[j]
            inv = np.exp(-v)
            diff = mean[r, j] - x[i, j]
            r2 = diff * diff * inv
            row += half * (log2pi + v + r2)
            dmean[r, j] = s * diff * inv
            dlogvar[0 if shared else j] += s * half * (one - r2)
        total += row
    return total


# ----------------------------------------------------------------------------- optimizers
@njit(**_OPTS)
def _adam_range(p, g, m, v, lo, hi, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    dt = p.dtype.type
    decay, step, inv_bc2 = dt(1.0 - lr * weight_decay), dt(lr / bc1), dt(1.0 / bc2)
    b1, b2, c1, c2 = dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2)
    e, gs, half, zero = dt(eps), dt(gscale), dt(0.5), dt(0)
    tiny = dt(TINY32) if p.itemsize == 4 else dt(TINY64)
    gfloor = (tiny / c2) ** half if c2 > zero else tiny
    # views, so that indices start at 0: a loop over range(lo, hi) could index with a
    # negative number, and Numba's wrap-around check then blocks vectorisation (14x)
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(p.shape[0]):
        gi = gs * g[i]
        gi = gi if abs(gi) >= gfloor else zero  # flush: see the reference
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step * mi / ((vi * inv_bc2) ** half + e)


@njit(parallel=True, **_OPTS)
def _adam_parallel(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale, chunks):
    n = p.shape[0]
    for c in prange(chunks):  # each thread updates its own elements
        _adam_range(p, g, m, v, c * n // chunks, (c + 1) * n // chunks, lr, beta1, beta2,
                    eps, bc1, bc2, weight_decay, gscale)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    threads = get_num_threads() if p.shape[0] >= PARALLEL_MIN else 1  # the call costs ~10 us
    if threads > 1:
        _adam_parallel(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale,
                       4 * threads)
    else:
        _adam_range(p, g, m, v, 0, p.shape[0], lr, beta1, beta2, eps, bc1, bc2, weight_decay,
                    gscale)


@njit(**_OPTS)
def _adam_outer_rows(w, x, delta, m, v, lo, hi, lr, beta1, beta2, eps, bc1, bc2,
                     weight_decay):
    dt = w.dtype.type
    decay, step, inv_bc2 = dt(1.0 - lr * weight_decay), dt(lr / bc1), dt(1.0 / bc2)
    b1, b2, c1, c2 = dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2)
    e, half, zero = dt(eps), dt(0.5), dt(0)
    tiny = dt(TINY32) if w.itemsize == 4 else dt(TINY64)
    gfloor = (tiny / c2) ** half if c2 > zero else tiny
    n = x.shape[0]
    n_out = delta.shape[1]
    w, x, m, v = w[lo:hi], x[:, lo:hi], m[lo:hi], v[lo:hi]  # indices from 0: see _adam_range
    grow = np.empty(n_out, dtype=w.dtype)  # one row of x^T delta at a time, never all of it
    for i in range(w.shape[0]):
        for j in range(n_out):
            grow[j] = zero
        for r in range(n):
            xri = x[r, i]
            for j in range(n_out):
                grow[j] += xri * delta[r, j]
        for j in range(n_out):
            gi = grow[j]
            gi = gi if abs(gi) >= gfloor else zero
            mi = b1 * m[i, j] + c1 * gi
            vi = b2 * v[i, j] + c2 * gi * gi
            mi = mi if abs(mi) >= tiny else zero
            vi = vi if vi >= tiny else zero
            m[i, j] = mi
            v[i, j] = vi
            w[i, j] = w[i, j] * decay - step * mi / ((vi * inv_bc2) ** half + e)


@njit(parallel=True, **_OPTS)
def _adam_outer_parallel(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay,
                         chunks):
    n_in = w.shape[0]
    for c in prange(chunks):
        _adam_outer_rows(w, x, delta, m, v, c * n_in // chunks, (c + 1) * n_in // chunks, lr,
                         beta1, beta2, eps, bc1, bc2, weight_decay)


def adam_step_outer(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    args = (lr, beta1, beta2, eps, bc1, bc2, weight_decay)
    threads = get_num_threads() if w.size >= PARALLEL_MIN else 1
    if threads > 1:
        _adam_outer_parallel(w, x, delta, m, v, *args, 4 * threads)
    else:
        _adam_outer_rows(w, x, delta, m, v, 0, w.shape[0], *args)


@njit(**_OPTS)
def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first, gscale):
    dt = p.dtype.type
    step, mom, wd, gs = dt(lr), dt(momentum), dt(weight_decay), dt(gscale)
    for i in range(p.shape[0]):
        d = gs * g[i] + wd * p[i]
        if momentum != 0.0:
            b = d if first else mom * buf[i] + d
            buf[i] = b
            d = d + mom * b if nesterov else b
        p[i] -= step * d


@njit(**_REDUCE)
def sum_squares(g):
    total = 0.0
    for i in range(g.shape[0]):
        gi = np.float64(g[i])
        total += gi * gi
    return total
