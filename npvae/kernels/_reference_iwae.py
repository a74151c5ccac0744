"""Plain-NumPy reference kernels of the importance-weighted objectives (IWAE and DReG):
the log weights and their normalised weights (``iwae_weights``) and the backward to the
encoder's output (``iwae_backward``); the spec of :mod:`npvae.kernels._numba_iwae`."""

from __future__ import annotations

import numpy as np

from npvae.kernels._reference_kl import sample_kl_backward


def log_prior_ratio(eps, z, logvar, out=None):
    r"""Log density ratio :math:`\log p(z) - \log q(z | x)` of reparameterised samples, float64.

    For :math:`z = \mu + e^{\ell/2} \epsilon`, :math:`p = N(0, I)` and
    :math:`q = N(\mu, \mathrm{diag}\, e^{\ell})` the normalising constants cancel and
    :math:`(z - \mu)^2 / e^{\ell} = \epsilon^2`:

    .. math::
        \log \frac{p(z)}{q(z|x)} = \tfrac12 \sum_j \left(\epsilon_j^2 - z_j^2 + \ell_j\right)

    The one definition in npvae: :func:`iwae_weights` (training) and
    :func:`npvae.inference.metrics.iwae_log_likelihood` (evaluation) use it. Not a kernel.

    Parameters
    ----------
    eps, z : ndarray (..., N, Z)
        The noise and the samples it gave.
    logvar : ndarray (N, Z)
        :math:`\ell`, broadcast over the leading axes of ``eps``.
    out : ndarray (..., N) of float64, optional

    Returns
    -------
    ndarray (..., N) of float64
    """
    out = np.einsum("...j,...j->...", eps, eps, dtype=np.float64, out=out)
    out -= np.einsum("...j,...j->...", z, z, dtype=np.float64)
    out += logvar.sum(axis=-1, dtype=np.float64)
    out *= 0.5
    return out


def importance_weights(a, k):
    r"""The bound and the normalised weights of log weights ``a``, by log-sum-exp.

    ``a`` has shape (L k, N), sample ``s = l k + i`` of each column. With
    :math:`m_{ln} = \max_i a_{lin}`:

    .. math::
        b_{ln} = \log \frac1k \sum_i e^{a_{lin}} = m_{ln} + \log \sum_i e^{a_{lin} - m_{ln}}
        - \log k, \qquad
        \tilde w_{lin} = \frac{e^{a_{lin} - m_{ln}}}{\sum_{i'} e^{a_{li'n} - m_{ln}}}

    Every exponent is at most 0 and the largest term is 1, so nothing overflows, and the
    weights never underflow all together (log weights of -1e5 nats are fine). Not a kernel.

    Returns
    -------
    bound : ndarray (L, N)
    weights : ndarray (L k, N)
        Normalised over the k samples of each bound: they sum to 1 there.
    """
    g = a.reshape(-1, k, a.shape[-1])
    m = g.max(axis=1, keepdims=True)
    e = np.exp(g - m)
    total = e.sum(axis=1, keepdims=True)
    bound = (m + np.log(total))[:, 0] - np.log(k)
    return bound, (e / total).reshape(a.shape)


def iwae_weights(h, noise, z, nll, beta, k, ratio, wn, scale):
    r"""Log weights of the importance-weighted bound, their normalised weights, the bound.

    For row ``r`` (sample ``s = l k + i`` of data point ``n = r % N``, ``R = L k N`` rows):

    .. math::
        \Delta_r = \log\frac{p(z_r)}{q(z_r|x_n)}, \qquad
        a_r = \beta \Delta_r - \mathrm{nll}_r, \qquad
        \tilde w_r = \mathrm{softmax}_i(a_{l\cdot n})_i, \qquad
        s_r = \frac{\tilde w_r}{L N}

    by :func:`log_prior_ratio` and :func:`importance_weights`, in float64.

    Parameters
    ----------
    h : ndarray (N, 2Z)
        ``[mu | logvar]``.
    noise, z : ndarray (R, Z)
        The noise and the samples (``z`` may be a strided view).
    nll : ndarray (R,) of float64
        :math:`-\log p(x_n | z_r)`.
    beta : float
    k : int
        Importance samples per bound.
    ratio, wn : ndarray (R,) of float64, written
        :math:`\log p(z_r) - \log q(z_r|x)` and the normalised weights.
    scale : ndarray (R,), written
        :math:`s_r`, in the dtype of ``h``: the weight of row r's gradient in the loss.

    Returns
    -------
    (float, float, float)
        The sum over the L N bounds of :math:`\log \frac1k \sum_i e^{a}`, the sum of
        ``nll`` and the sum of ``ratio``.
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    rows = noise.shape[0]
    s = rows // n
    ratio[...] = log_prior_ratio(noise.reshape(s, n, zdim), z.reshape(s, n, zdim),
                                 h[:, zdim:]).reshape(-1)
    bound, w = importance_weights((beta * ratio - nll).reshape(s, n), k)
    wn[...] = w.reshape(-1)
    scale[...] = wn / (rows // k)
    return float(bound.sum()), float(nll.sum()), float(ratio.sum())


def iwae_backward(h, noise, z, dz, scale, rho, beta, stop_q, dh):
    r"""Backward of the importance-weighted loss from the sample to the encoder output.

    With :math:`\delta z_r` the decoder's gradient of row r (its NLL weighted by
    :math:`s_r`) and :math:`\sigma_n = e^{\ell_n/2}`:

    .. math::
        g_r = \rho_r \left(\delta z_r + \beta s_r (z_r - [\mathrm{stop}]\,
            \epsilon_r / \sigma_n)\right), \qquad
        \partial\mu_n = \sum_{r \in n} g_r, \qquad
        \partial\ell_n = \tfrac12 \sigma_n \sum_{r \in n} g_r \epsilon_r
            - [\text{not stop}]\,\tfrac\beta2 \sum_{r \in n} \rho_r s_r

    IWAE: :math:`\rho = 1`, q not stopped (the last term is :math:`-\beta/(2N)`); DReG:
    :math:`\rho_r = 1 - \beta + \beta \tilde w_r` and q's parameters stopped
    (docs/math.md, "Importance-weighted objectives").

    Parameters
    ----------
    h, noise, z : as in :func:`iwae_weights`
    dz : ndarray (R, Z)
        :math:`\delta z`, read only (may be a strided view).
    scale, rho : ndarray (R,)
    beta : float
    stop_q : bool
    dh : ndarray (N, 2Z), written
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    s = noise.shape[0] // n
    std = np.tile(np.exp(0.5 * h[:, zdim:]), (s, 1))
    t = z - noise / std if stop_q else z
    g = rho[:, None] * (dz + beta * scale[:, None] * t)
    sample_kl_backward(h, noise, g, np.zeros(zdim, h.dtype), dh)
    if not stop_q:
        dh[:, zdim:] -= 0.5 * beta * (rho * scale).reshape(s, n).sum(axis=0)[:, None]
