"""Numba kernels: the loops of :mod:`npvae.kernels._reference`, fused and allocation-free.

Each function has the name, signature and meaning of its reference twin; read the
reference for the math. Here the work is done in one pass over memory with no
temporaries. ``fastmath`` stays off so NaN/inf checks keep working. Compilation is lazy
(nothing compiles at import) and cached on disk unless ``NPVAE_NUMBA_CACHE=0``.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

_CACHE = os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0"
jit = njit(cache=_CACHE, nogil=True)
inline = njit(cache=_CACHE, inline="always")

LOG_2PI = float(np.log(2 * np.pi))


@inline
def _sigmoid(a):
    if a >= 0:
        return 1.0 / (1.0 + np.exp(-a))
    e = np.exp(a)
    return e / (1.0 + e)


@inline
def _act(a, code, param):
    if code == 1:
        return a if a > 0 else 0.0
    if code == 0:
        return a
    if code == 2:
        return a if a > 0 else param * a
    if code == 3:
        return a if a > 0 else param * np.expm1(a)
    if code == 4:
        return np.tanh(a)
    if code == 5:
        return _sigmoid(a)
    return max(a, 0.0) + np.log1p(np.exp(-abs(a)))  # softplus


@inline
def _dact(y, code, param):
    if code == 1:
        return 1.0 if y > 0 else 0.0
    if code == 0:
        return 1.0
    if code == 2:
        return 1.0 if y > 0 else param
    if code == 3:
        return 1.0 if y > 0 else y + param
    if code == 4:
        return 1.0 - y * y
    if code == 5:
        return y * (1.0 - y)
    return -np.expm1(-y)  # softplus


@jit
def bias_act(y, b, code, param):
    n, h = y.shape
    if code == 1:  # ReLU, the common case, without the switch in the loop
        for i in range(n):
            for j in range(h):
                a = y[i, j] + b[j]
                y[i, j] = a if a > 0 else 0.0
    elif code == 0:
        for i in range(n):
            for j in range(h):
                y[i, j] += b[j]
    else:
        for i in range(n):
            for j in range(h):
                y[i, j] = _act(y[i, j] + b[j], code, param)


@jit
def act_backward(dy, y, code, param, db):
    n, h = dy.shape
    acc = np.zeros(h, dtype=np.float64)
    if code == 0:
        for i in range(n):
            for j in range(h):
                acc[j] += dy[i, j]
    elif code == 1:
        for i in range(n):
            for j in range(h):
                if y[i, j] > 0:
                    acc[j] += dy[i, j]
                else:
                    dy[i, j] = 0.0
    else:
        for i in range(n):
            for j in range(h):
                g = dy[i, j] * _dact(y[i, j], code, param)
                dy[i, j] = g
                acc[j] += g
    for j in range(h):
        db[j] = acc[j]


@jit
def sample_kl(h, noise, z, kl_col):
    n = h.shape[0]
    zdim = h.shape[1] // 2
    reps = noise.shape[0] // n
    for j in range(zdim):
        kl_col[j] = 0.0
    for i in range(n):
        for j in range(zdim):
            mu = h[i, j]
            lv = h[i, zdim + j]
            std = np.exp(0.5 * lv)
            for r in range(reps):
                z[r * n + i, j] = mu + std * noise[r * n + i, j]
            kl_col[j] += 0.5 * (mu * mu + std * std - 1.0 - lv)


@jit
def sample_kl_backward(h, noise, dz, w, dh):
    n = h.shape[0]
    zdim = h.shape[1] // 2
    reps = noise.shape[0] // n
    for i in range(n):
        for j in range(zdim):
            mu = h[i, j]
            lv = h[i, zdim + j]
            std = np.exp(0.5 * lv)
            gmu = 0.0
            gnoise = 0.0
            for r in range(reps):
                g = dz[r * n + i, j]
                gmu += g
                gnoise += g * noise[r * n + i, j]
            dh[i, j] = gmu + w[j] * mu
            dh[i, zdim + j] = gnoise * 0.5 * std + w[j] * 0.5 * (std * std - 1.0)


@jit
def bernoulli_nll(logits, x, scale, dlogits):
    rows, d = logits.shape
    n = x.shape[0]
    total = 0.0
    for r in range(rows):
        i = r % n
        for j in range(d):
            lg = logits[r, j]
            t = np.exp(-abs(lg))
            total += max(lg, 0.0) - x[i, j] * lg + np.log1p(t)
            sig = 1.0 / (1.0 + t) if lg >= 0 else t / (1.0 + t)
            dlogits[r, j] = scale * (sig - x[i, j])
    return total


@jit
def gaussian_nll(mean, x, logvar, scale, dmean, dlogvar):
    rows, d = mean.shape
    n = x.shape[0]
    shared = logvar.shape[0] == 1
    acc = np.zeros(d, dtype=np.float64)
    total = 0.0
    for r in range(rows):
        i = r % n
        for j in range(d):
            v = logvar[0] if shared else logvar[j]
            inv = np.exp(-v)
            diff = mean[r, j] - x[i, j]
            r2 = diff * diff * inv
            total += 0.5 * (LOG_2PI + v + r2)
            dmean[r, j] = scale * diff * inv
            acc[j] += scale * 0.5 * (1.0 - r2)
    if shared:
        dlogvar[0] = acc.sum()
    else:
        for j in range(d):
            dlogvar[j] = acc[j]
    return total


@jit
def adam_step(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    decay = 1.0 - lr * weight_decay
    step = lr / bc1
    inv_bc2 = 1.0 / bc2
    for i in range(p.shape[0]):
        gi = gscale * g[i]
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step * mi / (np.sqrt(vi * inv_bc2) + eps)


@jit
def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first, gscale):
    for i in range(p.shape[0]):
        d = gscale * g[i] + weight_decay * p[i]
        if momentum != 0.0:
            b = d if first else momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@jit
def sum_squares(g):
    total = 0.0
    for i in range(g.shape[0]):
        gi = np.float64(g[i])
        total += gi * gi
    return total
