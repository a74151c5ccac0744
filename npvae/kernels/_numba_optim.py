"""Numba kernels of the optimizers: Adam (on a flat buffer, and on a weight matrix whose
gradient is formed on the fly), SGD, and the squared norm for clipping; the twins of
:mod:`npvae.kernels._reference`'s."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from npvae.kernels._jit import (
    _OPTS,
    _REDUCE,
    FTZ,
    PARALLEL_MIN,
    TINY32,
    TINY64,
    _parts,
    _probe,
    flush_to_zero,
    inline,
    restore_fp_mode,
    thread_count,
)


# ----------------------------------------------------------------------------- optimizers
@inline
def _adam_constants(p, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    """The update's constants in ``p``'s dtype, for :func:`_adam_update`."""
    dt = p.dtype.type
    c2, half = dt(1.0 - beta2), dt(0.5)
    tiny = dt(TINY32) if p.itemsize == 4 else dt(TINY64)
    gfloor = (tiny / c2) ** half if c2 > dt(0) else tiny  # flush: see the reference
    return (dt(1.0 - lr * weight_decay), dt(lr / bc1), dt(1.0 / bc2), dt(beta1), dt(beta2),
            dt(1.0 - beta1), c2, dt(eps), half, dt(0), tiny, gfloor)


@inline
def _adam_update(pi, gi, mi, vi, k):
    """One parameter's Adam update (the reference's math, flushed as it is): returns the
    new ``(p, m, v)``. ``k`` is :func:`_adam_constants`."""
    decay, step, inv_bc2, b1, b2, c1, c2, e, half, zero, tiny, gfloor = k
    gi = gi if abs(gi) >= gfloor else zero
    mi = b1 * mi + c1 * gi
    vi = b2 * vi + c2 * gi * gi
    if not FTZ:  # else m and v below tiny become 0 in hardware: see flush_to_zero
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
    return pi * decay - step * mi / ((vi * inv_bc2) ** half + e), mi, vi


@njit(**_OPTS)
def _adam_range(p, g, m, v, lo, hi, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    k = _adam_constants(p, lr, beta1, beta2, eps, bc1, bc2, weight_decay)
    gs = p.dtype.type(gscale)
    # views, so that indices start at 0: a loop over range(lo, hi) could index with a
    # negative number, and Numba's wrap-around check then blocks vectorisation (14x)
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    mode = flush_to_zero()  # for the length of the loop, on this thread (plumbing.fpmode)
    for i in range(p.shape[0]):
        p[i], m[i], v[i] = _adam_update(p[i], gs * g[i], m[i], v[i], k)
    restore_fp_mode(mode)


@njit(parallel=True, **_OPTS)
def _adam_parallel(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale, chunks):
    n = p.shape[0]
    for c in prange(chunks):  # each thread updates its own elements
        _adam_range(p, g, m, v, c * n // chunks, (c + 1) * n // chunks, lr, beta1, beta2,
                    eps, bc1, bc2, weight_decay, gscale)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    threads = thread_count() if p.shape[0] >= PARALLEL_MIN else 1
    if threads > 1:
        _adam_parallel(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale,
                       4 * threads)
    else:
        _adam_range(p, g, m, v, 0, p.shape[0], lr, beta1, beta2, eps, bc1, bc2, weight_decay,
                    gscale)


@njit(**_OPTS)
def _adam_outer_rows(w, x, delta, m, v, lo, hi, lr, beta1, beta2, eps, bc1, bc2,
                     weight_decay):
    k = _adam_constants(w, lr, beta1, beta2, eps, bc1, bc2, weight_decay)
    zero = w.dtype.type(0)
    n = x.shape[0]
    n_out = delta.shape[1]
    w, x, m, v = w[lo:hi], x[:, lo:hi], m[lo:hi], v[lo:hi]  # indices from 0: see _adam_range
    grow = np.empty(n_out, dtype=w.dtype)  # one row of x^T delta at a time, never all of it
    mode = flush_to_zero()  # as in _adam_range
    for i in range(w.shape[0]):
        for j in range(n_out):
            grow[j] = zero
        for r in range(n):
            xri = x[r, i]
            for j in range(n_out):
                grow[j] += xri * delta[r, j]
        for j in range(n_out):
            w[i, j], m[i, j], v[i, j] = _adam_update(w[i, j], grow[j], m[i, j], v[i, j], k)
    restore_fp_mode(mode)


@njit(parallel=True, **_OPTS)
def _adam_outer_parallel(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay,
                         chunks):
    n_in = w.shape[0]
    for c in prange(chunks):
        _adam_outer_rows(w, x, delta, m, v, c * n_in // chunks, (c + 1) * n_in // chunks, lr,
                         beta1, beta2, eps, bc1, bc2, weight_decay)


def adam_step_outer(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    args = (lr, beta1, beta2, eps, bc1, bc2, weight_decay)
    threads = thread_count() if w.size >= PARALLEL_MIN else 1
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


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
