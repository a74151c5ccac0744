"""Plain-NumPy reference kernels of the reparameterised sample and its closed-form KL
(``sample_kl``, ``sample_kl_backward``, and the closed form ``gaussian_kl``); the spec
of :mod:`npvae.kernels._numba_kl`."""

from __future__ import annotations

import numpy as np


def gaussian_kl(mu, logvar):
    r"""KL(N(mu, e^logvar) || N(0, 1)) of each value:
    :math:`\tfrac12 (\mu^2 + e^{\ell} - 1 - \ell)` (docs/math.md section 5).

    Not a kernel: the one closed form that :func:`sample_kl`, the evaluation metrics
    (:mod:`npvae.inference.metrics`) and the benchmark's peer check use."""
    return 0.5 * (mu * mu + np.exp(logvar) - 1.0 - logvar)


def sample_kl(h, noise, z, kl_col):
    r"""Reparameterised sample and closed-form KL, forward.

    .. math::
        z_{ln} = \mu_n + e^{\ell_n / 2} \odot \epsilon_{ln}, \qquad
        \mathrm{kl}_j = \sum_n \tfrac12 (\mu_{nj}^2 + e^{\ell_{nj}} - 1 - \ell_{nj})

    Parameters
    ----------
    h : ndarray (N, 2Z)
        ``[mu | logvar]``.
    noise : ndarray (L*N, Z)
        Standard normal draws, sample-major.
    z : ndarray (L*N, Z), written
    kl_col : ndarray (Z,), written
        KL of each latent dimension, summed over the batch.
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    mu, logvar = h[:, :zdim], h[:, zdim:]
    reps = noise.shape[0] // n
    std = np.exp(0.5 * logvar)
    z[...] = np.tile(mu, (reps, 1)) + np.tile(std, (reps, 1)) * noise
    kl_col[...] = gaussian_kl(mu, logvar).sum(axis=0)


def sample_kl_backward(h, noise, dz, w, dh):
    r"""Backward of :func:`sample_kl` for the loss ``sum(dz * z) + sum_j w_j kl_j``.

    .. math::
        \partial_{\mu_n} = \sum_l dz_{ln} + w \odot \mu_n, \qquad
        \partial_{\ell_n} = \sum_l dz_{ln} \odot \epsilon_{ln} \odot \tfrac12 e^{\ell_n/2}
            + w \odot \tfrac12 (e^{\ell_n} - 1)

    Parameters
    ----------
    h, noise : as in :func:`sample_kl`
    dz : ndarray (L*N, Z)
        Gradient of the loss with respect to ``z``.
    w : ndarray (Z,)
        Weight of each dimension's KL in the loss (``beta / N``, or 0 where free bits
        hold the dimension's KL constant).
    dh : ndarray (N, 2Z), written
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    mu, logvar = h[:, :zdim], h[:, zdim:]
    reps = noise.shape[0] // n
    std = np.exp(0.5 * logvar)
    dz3 = dz.reshape(reps, n, zdim)
    noise3 = noise.reshape(reps, n, zdim)
    dh[:, :zdim] = dz3.sum(axis=0) + w * mu
    dh[:, zdim:] = (dz3 * noise3).sum(axis=0) * 0.5 * std + w * 0.5 * (np.exp(logvar) - 1.0)
