"""Numba kernels of the importance-weighted objectives (IWAE and DReG): the log weights
and their normalised weights (``iwae_weights``) and the backward to the encoder's output
(``iwae_backward``); the twins of :mod:`npvae.kernels._reference_iwae`'s."""

from __future__ import annotations

import numpy as np
from numba import njit

from npvae.kernels._jit import _OPTS, _exp_loop, _parts, _probe
from npvae.kernels._numba_kl import _fill_std, _std_buffer


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


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
