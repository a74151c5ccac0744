"""Numba kernels of the samplers over z (MH, MALA, HMC): the diagonal-Gaussian
log-density and its gradient, the leapfrog steps and the row select; the twins of
:mod:`npvae.kernels._reference_samplers`'s."""

from __future__ import annotations

from numba import njit

from npvae.kernels._jit import _OPTS, _REDUCE, _parts, _probe


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
