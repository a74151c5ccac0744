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

import threading

import numpy as np
from numba import njit, prange

from npvae.kernels._jit import (  # noqa: F401 (FTZ, PARALLEL_MIN, matmul: read from here)
    _OPTS,
    _REDUCE,
    CUT32,
    CUT64,
    FTZ,
    LOG_2PI,
    PARALLEL_MIN,
    _parts,
    _probe,
    call_unary,
    inline,
    matmul,
    unary_loop,
)
from npvae.kernels._numba_dense import act_backward, bias_act, bias_act_pre  # noqa: F401
from npvae.kernels._numba_optim import (  # noqa: F401 (kernels; the twins, for the tests)
    _adam_outer_parallel,
    _adam_parallel,
    _adam_range,
    adam_step,
    adam_step_outer,
    sgd_step,
    sum_squares,
)


# ------------------------------------------------------------------------------------ exp
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
# Both take std = exp(logvar / 2), filled first by _fill_std.
@inline
def _fill_std(loop, h, std):
    half = h.dtype.type(0.5)
    n, zdim = std.shape
    for i in range(n):
        for j in range(zdim):
            std[i, j] = half * h[i, zdim + j]
    _exp_rows(loop, std, 0, n)  # an infinite std gives an infinite loss, reported there


@inline
def _kl_setup(loop, h, std, noise):
    """Fill ``std`` (:func:`_fill_std`); return ``(half, one, n, zdim, reps)``."""
    _fill_std(loop, h, std)
    dt, n = h.dtype.type, h.shape[0]
    return dt(0.5), dt(1), n, h.shape[1] // 2, noise.shape[0] // n


@njit(**_OPTS)
def _sample_kl(loop, h, std, noise, z, kl_col):
    half, one, n, zdim, reps = _kl_setup(loop, h, std, noise)
    for r in range(reps):
        for i in range(n):
            for j in range(zdim):
                z[r * n + i, j] = h[i, j] + std[i, j] * noise[r * n + i, j]
    for j in range(zdim):
        kl_col[j] = 0
    for i in range(n):
        for j in range(zdim):
            mu, sd = h[i, j], std[i, j]
            kl_col[j] += half * (mu * mu + sd * sd - one - h[i, zdim + j])


@njit(**_OPTS)
def _sample_kl_backward(loop, h, std, noise, dz, w, dh):
    half, one, n, zdim, reps = _kl_setup(loop, h, std, noise)
    for i in range(n):  # the KL's share, then each sample's
        for j in range(zdim):
            sd = std[i, j]
            dh[i, j] = w[j] * h[i, j]
            dh[i, zdim + j] = w[j] * half * (sd * sd - one)
    for r in range(reps):
        for i in range(n):
            g, e, sd = dz[r * n + i], noise[r * n + i], std[i]  # row views
            dmu, dlv = dh[i, :zdim], dh[i, zdim:]
            for j in range(zdim):
                dmu[j] += g[j]
                dlv[j] += g[j] * e[j] * half * sd[j]


def _std_buffer(h):
    return _buffer("std", (h.shape[0], h.shape[1] // 2), h.dtype)


def sample_kl(h, noise, z, kl_col):
    _sample_kl(_exp_loop(h.dtype), h, _std_buffer(h), noise, z, kl_col)


def sample_kl_backward(h, noise, dz, w, dh):
    _sample_kl_backward(_exp_loop(h.dtype), h, _std_buffer(h), noise, dz, w, dh)


# ------------------------------------------------- importance weights (IWAE and DReG)
@njit(**_OPTS)
def iwae_weights(h, noise, z, nll, beta, k, ratio, wn, scale):
    n = h.shape[0]
    zdim = h.shape[1] // 2
    rows = noise.shape[0]
    groups = rows // (k * n)  # L
    for r in range(rows):  # log p(z) - log q(z|x), in float64
        i = r % n
        acc = 0.0
        for j in range(zdim):
            e, zz = np.float64(noise[r, j]), np.float64(z[r, j])
            acc += e * e - zz * zz + np.float64(h[i, zdim + j])
        ratio[r] = 0.5 * acc
    inv = 1.0 / (groups * n)
    bound = nll_sum = ratio_sum = 0.0
    for g in range(groups):
        for i in range(n):
            m = -np.inf
            for q in range(k):  # a = beta ratio - nll, kept in wn; m its largest
                r = (g * k + q) * n + i
                a = beta * ratio[r] - nll[r]
                wn[r] = a
                m = a if a > m or a != a else m  # a NaN propagates
            total = 0.0
            for q in range(k):
                r = (g * k + q) * n + i
                e = np.exp(wn[r] - m)
                wn[r] = e
                total += e
            for q in range(k):
                r = (g * k + q) * n + i
                wn[r] /= total
                scale[r] = wn[r] * inv
                nll_sum += nll[r]
                ratio_sum += ratio[r]
            bound += m + np.log(total)
    return bound - groups * n * np.log(k), nll_sum, ratio_sum


@njit(**_OPTS)
def _iwae_backward(loop, h, std, noise, z, dz, scale, rho, beta, stop_q, dh):
    dt = h.dtype.type
    half, b = dt(0.5), dt(beta)
    n = h.shape[0]
    zdim = h.shape[1] // 2
    _fill_std(loop, h, std)
    for i in range(n):
        for j in range(2 * zdim):
            dh[i, j] = 0
    for r in range(noise.shape[0]):
        i = r % n
        sb, p = b * scale[r], rho[r]
        for j in range(zdim):
            e, sd = noise[r, j], std[i, j]
            t = z[r, j] - e / sd if stop_q else z[r, j]
            g = p * (dz[r, j] + sb * t)
            dh[i, j] += g
            dh[i, zdim + j] += g * e * half * sd
            if not stop_q:
                dh[i, zdim + j] -= half * b * p * scale[r]


def iwae_backward(h, noise, z, dz, scale, rho, beta, stop_q, dh):
    _iwae_backward(_exp_loop(h.dtype), h, _std_buffer(h), noise, z, dz, scale, rho, beta,
                   stop_q, dh)


# --------------------------------------------------------------------------- likelihoods
ROW_CHUNKS = 8  # row blocks of a parallel loop: fixed, so sums do not depend on the threads


def _row_chunks(y):
    """Row blocks for the ``prange`` twin of a kernel over ``y``, or 0: stay serial."""
    return min(y.shape[0], ROW_CHUNKS) if y.size >= PARALLEL_MIN else 0


@inline
def _exp_neg_abs(loop, logits, t, lo, hi):
    """Rows ``lo:hi`` of ``t = e^{-|l|}``, exactly 0 past the cut (no subnormals)."""
    cut = logits.dtype.type(CUT32) if logits.itemsize == 4 else logits.dtype.type(CUT64)
    d = logits.shape[1]
    for r in range(lo, hi):
        for j in range(d):
            a = abs(logits[r, j])
            t[r, j] = -a if a < cut else -np.inf
    _exp_rows(loop, t, lo, hi)


LOG1P_CHUNK = 512  # factors per product: 512 factors in [1, 2] stay below 2^512


@inline
def _bernoulli_row(logits, xr, t, s, dlogits, r):
    """Row ``r``: write ``dlogits[r] = s (sigmoid(l) - x)`` and return the row's NLL,
    ``sum(max(l, 0) - x l) + sum(log1p(t))`` with ``t = e^{-|l|}`` already in ``t[r]``.

    The log part is taken as ``log(prod(1 + t))`` over chunks of the row, the product in
    float64 (one ``log`` per chunk instead of one ``log1p`` per value; the product's
    relative error, about 1e-16 per factor, is far below float32's rounding)."""
    dt = logits.dtype.type
    zero, one = dt(0), dt(1)
    d = logits.shape[1]
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
    return row + logs


@njit(**_REDUCE)
def _bernoulli_rows(loop, logits, x, t, scale, dlogits, lo, hi):
    """For rows ``lo:hi``: write ``dlogits = scale (sigmoid(l) - x)``; return their NLL."""
    _exp_neg_abs(loop, logits, t, lo, hi)  # the block stays in cache for the loop below
    s = logits.dtype.type(scale)
    n = x.shape[0]
    total = 0.0
    for r in range(lo, hi):
        total += _bernoulli_row(logits, x[r % n], t, s, dlogits, r)
    return total


@njit(parallel=True, **_OPTS)
def _bernoulli_parallel(loop, logits, x, t, scale, dlogits, parts):
    rows, chunks = logits.shape[0], parts.shape[0]
    for c in prange(chunks):
        parts[c] = _bernoulli_rows(loop, logits, x, t, scale, dlogits, c * rows // chunks,
                                   (c + 1) * rows // chunks)
    total = 0.0
    for c in range(chunks):  # the blocks' sums in order
        total += parts[c]
    return total


def bernoulli_nll(logits, x, scale, dlogits):
    loop = _exp_loop(logits.dtype)
    t = _buffer("t", logits.shape, logits.dtype)
    chunks = _row_chunks(logits)
    if chunks:
        return _bernoulli_parallel(loop, logits, x, t, scale, dlogits,
                                   _buffer("nll_parts", (chunks,), np.float64))
    return _bernoulli_rows(loop, logits, x, t, scale, dlogits, 0, logits.shape[0])


@njit(**_REDUCE)
def _bernoulli_each_row(loop, logits, x, t, row_scale, dlogits, nll, lo, hi):
    """Rows ``lo:hi``: ``nll[r]`` and ``dlogits[r] = row_scale[r] (sigmoid(l) - x)``."""
    _exp_neg_abs(loop, logits, t, lo, hi)
    dt = logits.dtype.type
    n = x.shape[0]
    for r in range(lo, hi):
        nll[r] = _bernoulli_row(logits, x[r % n], t, dt(row_scale[r]), dlogits, r)


@njit(parallel=True, **_OPTS)
def _bernoulli_each_row_parallel(loop, logits, x, t, row_scale, dlogits, nll, chunks):
    rows = logits.shape[0]
    for c in prange(chunks):  # rows are independent: the result does not depend on threads
        _bernoulli_each_row(loop, logits, x, t, row_scale, dlogits, nll, c * rows // chunks,
                            (c + 1) * rows // chunks)


def bernoulli_nll_rows(logits, x, row_scale, dlogits, nll):
    loop = _exp_loop(logits.dtype)
    t = _buffer("t", logits.shape, logits.dtype)
    chunks = _row_chunks(logits)
    if chunks:
        _bernoulli_each_row_parallel(loop, logits, x, t, row_scale, dlogits, nll, chunks)
    else:
        _bernoulli_each_row(loop, logits, x, t, row_scale, dlogits, nll, 0, logits.shape[0])


@njit(**_OPTS)
def _sigmoid_rows(loop, logits, out, lo, hi):
    """Rows ``lo:hi`` of ``out = sigmoid(logits)``, from ``t = e^{-|l|}`` written there."""
    _exp_neg_abs(loop, logits, out, lo, hi)
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    for r in range(lo, hi):
        for j in range(logits.shape[1]):
            tj = out[r, j]
            out[r, j] = one / (one + tj) if logits[r, j] >= zero else tj / (one + tj)


@njit(parallel=True, **_OPTS)
def _sigmoid_parallel(loop, logits, out, chunks):
    n = logits.shape[0]
    for c in prange(chunks):
        _sigmoid_rows(loop, logits, out, c * n // chunks, (c + 1) * n // chunks)


def sigmoid(logits, out):
    loop = _exp_loop(logits.dtype)
    chunks = _row_chunks(logits)
    if chunks:
        _sigmoid_parallel(loop, logits, out, chunks)
    else:
        _sigmoid_rows(loop, logits, out, 0, logits.shape[0])
    return out


@inline
def _gaussian_row(mean, xr, logvar, inv0, s, dmean, dlogvar, r):
    """Row ``r``: write ``dmean[r]``, add the row's share to ``dlogvar``, return its NLL.
    ``inv0`` is ``exp(-logvar[0])``, taken once per call. A shared variance sums the row's
    squared residuals in a register and adds to ``dlogvar[0]`` once: a store per element
    into ``dlogvar[0]`` (which may alias ``dmean``) kept the loop scalar, 3x slower at
    D = 12, as did Numba's scalar exp per element."""
    dt = mean.dtype.type
    half, one, log2pi = dt(0.5), dt(1), dt(LOG_2PI)
    d = mean.shape[1]
    row = dt(0)
    if logvar.shape[0] == 1:
        for j in range(d):
            diff = mean[r, j] - xr[j]
            row += diff * diff
            dmean[r, j] = s * diff * inv0
        r2 = row * inv0
        dlogvar[0] += s * half * (dt(d) - r2)
        return half * (dt(d) * (log2pi + logvar[0]) + r2)
    for j in range(d):
        v = logvar[j]
        inv = np.exp(-v)
        diff = mean[r, j] - xr[j]
        r2 = diff * diff * inv
        row += half * (log2pi + v + r2)
        dmean[r, j] = s * diff * inv
        dlogvar[j] += s * half * (one - r2)
    return row


@njit(**_REDUCE)
def gaussian_nll(mean, x, logvar, scale, dmean, dlogvar):
    s = mean.dtype.type(scale)
    n = x.shape[0]
    for j in range(dlogvar.shape[0]):
        dlogvar[j] = 0
    total = 0.0
    inv0 = np.exp(-logvar[0])
    for r in range(mean.shape[0]):
        total += _gaussian_row(mean, x[r % n], logvar, inv0, s, dmean, dlogvar, r)
    return total


@inline
def _gaussian_rows_shared(mean, x, logvar, row_scale, dmean, dlogvar, nll):
    """gaussian_nll_rows with one shared variance, rows walked chain by chain (no modulo
    per row) and dlogvar summed in a float64 register: 6.6 against 8.8 us at 1600 x 12."""
    dt = mean.dtype.type
    n, d = x.shape
    inv0 = np.exp(-logvar[0])
    const = d * (LOG_2PI + float(logvar[0]))
    dv = 0.0
    for c in range(mean.shape[0] // n):
        for p in range(n):
            r = c * n + p
            s = dt(row_scale[r]) * inv0
            row = dt(0)
            for j in range(d):
                diff = mean[r, j] - x[p, j]
                row += diff * diff
                dmean[r, j] = s * diff
            r2 = float(row * inv0)
            dv += float(row_scale[r]) * (d - r2)
            nll[r] = 0.5 * (const + r2)
    dlogvar[0] = 0.5 * dv


@njit(**_REDUCE)
def gaussian_nll_rows(mean, x, logvar, row_scale, dmean, dlogvar, nll):
    dt = mean.dtype.type
    if logvar.shape[0] == 1:
        _gaussian_rows_shared(mean, x, logvar, row_scale, dmean, dlogvar, nll)
        return
    n = x.shape[0]
    for j in range(dlogvar.shape[0]):
        dlogvar[j] = 0
    inv0 = np.exp(-logvar[0])
    for r in range(mean.shape[0]):
        nll[r] = _gaussian_row(mean, x[r % n], logvar, inv0, dt(row_scale[r]), dmean,
                               dlogvar, r)


# ------------------------------------------------------------------- samplers over z
# Rows are chain-major (r = c * N + p): the leapfrog loops run over each chain's N x Z
# values as one flat run, which vectorises (an inner loop over Z = 3 did not: 5x slower).
@njit(**_REDUCE)
def normal_log_density(z, mu, inv_var, const, out, grad):
    m, zd = mu.shape
    for i in range(z.shape[0]):
        p = 0 if m == 1 else i - (i // m) * m
        acc = 0.0
        for j in range(zd):
            d = z[i, j] - mu[p, j]
            g = d * inv_var[p, j]
            grad[i, j] = -g
            acc += float(d) * float(g)
        out[i] = const[p] - 0.5 * acc


@njit(**_OPTS)
def leapfrog_kick(v, g_lb, g_lr, beta, step):
    n = step.size
    vf, a, b, e = v.reshape(-1, n), g_lb.reshape(-1, n), g_lr.reshape(-1, n), step.reshape(-1)
    bt = v.dtype.type(beta)
    for c in range(vf.shape[0]):
        for k in range(n):
            vf[c, k] += e[k] * (a[c, k] + bt * b[c, k])


@njit(**_OPTS)
def leapfrog_drift(z, v, step):
    n = step.size
    zf, vf, e = z.reshape(-1, n), v.reshape(-1, n), step.reshape(-1)
    for c in range(zf.shape[0]):
        for k in range(n):
            zf[c, k] += e[k] * vf[c, k]


@njit(**_OPTS)
def leapfrog_kick_drift(z, v, g_lb, g_lr, beta, kick, drift):
    n = kick.size
    zf, vf, a, b = z.reshape(-1, n), v.reshape(-1, n), g_lb.reshape(-1, n), g_lr.reshape(-1, n)
    ek, ed = kick.reshape(-1), drift.reshape(-1)
    bt = v.dtype.type(beta)
    for c in range(vf.shape[0]):
        for k in range(n):
            vck = vf[c, k] + ek[k] * (a[c, k] + bt * b[c, k])
            vf[c, k] = vck
            zf[c, k] += ed[k] * vck


@njit(**_OPTS)
def select_rows(dst, src, mask):
    for i in range(dst.shape[0]):
        if mask[i]:
            for j in range(dst.shape[1]):
                dst[i, j] = src[i, j]


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
