"""Plain-NumPy reference kernels of the samplers over z (MH, MALA, HMC): the
diagonal-Gaussian log-density and its gradient, the leapfrog steps and the row select;
the spec of :mod:`npvae.kernels._numba_samplers`."""

from __future__ import annotations

import numpy as np


# Rows are chain-major, r = k * N + n: a per-point array of M rows (M = N, or 1 for one
# value shared by every row) is read at row r % M; R is a multiple of N.
def _rows(a, r):
    return np.tile(a, (r // a.shape[0],) + (1,) * (a.ndim - 1))


def normal_log_density(z, mu, inv_var, const, out, grad):
    r"""Diagonal-Gaussian log-density of every row, and its gradient in z.

    .. math::
        \mathrm{out}_r = c_r - \tfrac12 \sum_j (z_{rj} - \mu_{rj})^2 \lambda_{rj}, \qquad
        \mathrm{grad}_r = -(z_r - \mu_r) \odot \lambda_r

    with :math:`\mu, \lambda, c` read at row ``r % M``. The prior N(0, I) is
    ``mu = 0``, ``inv_var = 1`` (shape (1, Z)), ``const = -Z/2 log 2 pi``; HMC's kinetic
    energy :math:`-\tfrac12 |v|^2` is the same with ``const = 0``.

    Parameters
    ----------
    z : ndarray (R, Z)
    mu, inv_var : ndarray (M, Z), same dtype as z
    const : ndarray (M,) of float64, the same M
    out : ndarray (R,) of float64, written
    grad : ndarray (R, Z), written
    """
    r = z.shape[0]
    d = z - _rows(mu, r)
    iv = _rows(inv_var, r)
    grad[...] = -d * iv
    out[...] = _rows(const, r) - 0.5 * (d.astype(np.float64) ** 2 * iv).sum(axis=1)


def leapfrog_kick(v, g_lb, g_lr, beta, step):
    r"""In place: :math:`v \leftarrow v + e_r \odot (\nabla \mathrm{lb} + \beta \nabla
    \mathrm{lr})`, the momentum half of a leapfrog step.

    Parameters
    ----------
    v, g_lb, g_lr : ndarray (R, Z)
    beta : float
    step : ndarray (N, Z), read at row r % N
        Each point's step per latent dimension: the step size times the scale of the
        dimension, :math:`\epsilon_n s_{nj}` (unit mass in the coordinates z / s).
    """
    v += _rows(step, v.shape[0]) * (g_lb + v.dtype.type(beta) * g_lr)


def leapfrog_drift(z, v, step):
    r"""In place: :math:`z \leftarrow z + e_r \odot v`, the position step of leapfrog (and,
    with v standard normal, a random-walk proposal); ``step`` as in :func:`leapfrog_kick`."""
    z += _rows(step, z.shape[0]) * v


def leapfrog_kick_drift(z, v, g_lb, g_lr, beta, kick, drift):
    """:func:`leapfrog_kick` with steps ``kick``, then :func:`leapfrog_drift` with steps
    ``drift``, in one pass: the middle of a leapfrog trajectory (and, with ``kick`` half
    of ``drift``, its start)."""
    leapfrog_kick(v, g_lb, g_lr, beta, kick)
    leapfrog_drift(z, v, drift)


def select_rows(dst, src, mask):
    """In place: ``dst[r] = src[r]`` where ``mask[r]``, for 2-D ``dst``, ``src`` (R, C) and
    a boolean ``mask`` (R,). A select, never a blend: rows not taken are untouched, whatever
    ``src`` holds there (NaN, inf)."""
    np.copyto(dst, src, where=mask[:, None])
