"""Numba kernels of the reparameterised sample and its closed-form KL, forward
(``sample_kl``) and backward (``sample_kl_backward``); the twins of
:mod:`npvae.kernels._reference_kl`'s."""

from __future__ import annotations

from numba import njit

from npvae.kernels._jit import _OPTS, _buffer, _exp_loop, _exp_rows, _parts, _probe, inline


# Each kernel runs the sample loop and the per-(i, j) loop separately: a store into z
# inside the KL accumulation made the combined loop 8x slower (measured at 512 x 20).
# Both take std = exp(logvar / 2), filled first by _fill_std (inlined into _numba_iwae's
# kernel too: see the note in _jit on the disk cache).
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


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
