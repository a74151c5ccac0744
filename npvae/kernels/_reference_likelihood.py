"""Plain-NumPy reference kernels of the likelihoods: the Bernoulli NLL from logits and
its mean (``sigmoid``), the Gaussian NLL, summed and per row; the spec of
:mod:`npvae.kernels._numba_likelihood`."""

from __future__ import annotations

import numpy as np

from npvae.kernels._floats import LOG_2PI, flush_limits


def bernoulli_nll(logits, x, scale, dlogits):
    r"""Bernoulli negative log-likelihood from logits, and its scaled gradient.

    .. math::
        -\log p(x | l) = \mathrm{softplus}(l) - x l
                       = \max(l, 0) - x l + \log(1 + e^{-|l|}), \qquad
        \partial_l = \sigma(l) - x

    The max/log1p form never overflows and never takes log(sigmoid). Where
    :math:`|l|` exceeds ``-log(tiny)`` (87 in float32), :math:`e^{-|l|}` is taken as 0
    rather than a subnormal number (see :func:`flush_limits`).

    Parameters
    ----------
    logits : ndarray (L*N, D)
    x : ndarray (N, D)
        Targets in [0, 1].
    scale : float
        ``dlogits = scale * (sigmoid(logits) - x)`` (``1/(L N)`` for the mean loss).
    dlogits : ndarray (L*N, D), written

    Returns
    -------
    float
        The NLL summed over every row and pixel.
    """
    xt = np.tile(x, (logits.shape[0] // x.shape[0], 1))
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)  # e^{-|l|}, never subnormal
    nll = np.maximum(logits, 0) - xt * logits + np.log1p(t)
    sig = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))  # sigma(l) from the same t
    dlogits[...] = scale * (sig - xt)
    return float(nll.sum(dtype=np.float64))


def sigmoid(logits, out):
    r"""The Bernoulli mean :math:`\sigma(l) = 1 / (1 + e^{-l})`, written into ``out``.

    Computed from :math:`t = e^{-|l|}` as :math:`1/(1+t)` for :math:`l \ge 0` and
    :math:`t/(1+t)` otherwise, so ``exp`` never overflows; :math:`t` is 0 past the cut of
    :func:`flush_limits`, which gives exact 0 and 1 there instead of subnormal numbers.
    """
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)
    out[...] = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))
    return out


def gaussian_nll(mean, x, logvar, scale, dmean, dlogvar):
    r"""Gaussian negative log-likelihood with log-variance ``logvar``, and its gradients.

    .. math::
        -\log p(x | m) = \tfrac12 \left(\log 2\pi + v + (x - m)^2 e^{-v}\right), \quad
        \partial_m = (m - x) e^{-v}, \quad
        \partial_v = \tfrac12 \left(1 - (x - m)^2 e^{-v}\right)

    Parameters
    ----------
    mean : ndarray (L*N, D)
    x : ndarray (N, D)
    logvar : ndarray (D,) or (1,)
        Per-dimension, or one value shared by every dimension.
    scale : float
        Multiplies both gradients.
    dmean : ndarray (L*N, D), written
    dlogvar : ndarray, same shape as ``logvar``, written
        Summed over rows (and over dimensions when ``logvar`` has one value).

    Returns
    -------
    float
        The NLL summed over every row and dimension.
    """
    xt = np.tile(x, (mean.shape[0] // x.shape[0], 1))
    r2 = (xt - mean) ** 2 * np.exp(-logvar)
    nll = 0.5 * (LOG_2PI + logvar + r2)
    dmean[...] = scale * (mean - xt) * np.exp(-logvar)
    dv = scale * 0.5 * (1.0 - r2)
    dlogvar[...] = dv.sum(axis=0) if logvar.shape[0] == mean.shape[1] else dv.sum()
    return float(nll.sum(dtype=np.float64))


def bernoulli_nll_rows(logits, x, row_scale, dlogits, nll):
    r"""Per-row Bernoulli NLL from logits, and each row's gradient scaled by its own weight.

    The same terms as :func:`bernoulli_nll`, kept per row: for row ``r`` (data point
    ``r % N``)

    .. math::
        \mathrm{nll}_r = \sum_d \max(l_{rd}, 0) - x_d l_{rd} + \log(1 + e^{-|l_{rd}|}),
        \qquad \mathrm{dlogits}_r = s_r\,(\sigma(l_r) - x)

    Objectives that weight samples unequally (IWAE's normalised importance weights, M2's
    class probabilities) and samplers, which need log p(x | z) of every chain, use it.

    Parameters
    ----------
    logits : ndarray (R, D)
    x : ndarray (N, D), with R a multiple of N
    row_scale : ndarray (R,)
        ``s_r``, the weight of row r's gradient.
    dlogits : ndarray (R, D), written
    nll : ndarray (R,) of float64, written
    """
    xt = np.tile(x, (logits.shape[0] // x.shape[0], 1))
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)
    e = np.maximum(logits, 0) - xt * logits + np.log1p(t)
    sig = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))
    dlogits[...] = row_scale[:, None] * (sig - xt)
    nll[...] = e.sum(axis=1, dtype=np.float64)


def gaussian_nll_rows(mean, x, logvar, row_scale, dmean, dlogvar, nll):
    r"""Per-row Gaussian NLL, and each row's gradients scaled by its own weight.

    The terms of :func:`gaussian_nll` kept per row ``r`` (data point ``r % N``):
    :math:`\mathrm{nll}_r = \sum_d \tfrac12 (\log 2\pi + v_d + (x_d - m_{rd})^2 e^{-v_d})`,
    ``dmean_r = s_r (m_r - x) e^{-v}``, and ``dlogvar`` the sum over rows of
    :math:`s_r \tfrac12 (1 - (x - m_r)^2 e^{-v})` (over dimensions too when ``logvar`` has
    one value).
    """
    xt = np.tile(x, (mean.shape[0] // x.shape[0], 1))
    r2 = (xt - mean) ** 2 * np.exp(-logvar)
    s = row_scale[:, None]
    dmean[...] = s * (mean - xt) * np.exp(-logvar)
    dv = s * 0.5 * (1.0 - r2)
    dlogvar[...] = dv.sum(axis=0) if logvar.shape[0] == mean.shape[1] else dv.sum()
    nll[...] = (0.5 * (LOG_2PI + logvar + r2)).sum(axis=1, dtype=np.float64)
