"""Numba kernels of the likelihoods: the Bernoulli NLL from logits (summed and per row,
serial and ``prange`` twins) and its mean (``sigmoid``), the Gaussian NLL (summed and per
row); the twins of :mod:`npvae.kernels._reference_likelihood`'s."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from npvae.kernels._jit import (
    _OPTS,
    _REDUCE,
    CUT32,
    CUT64,
    LOG_2PI,
    PARALLEL_MIN,
    _buffer,
    _exp_loop,
    _exp_rows,
    _parts,
    _probe,
    inline,
)

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


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
