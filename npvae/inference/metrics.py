r"""Evaluation of a trained VAE: ELBO terms, the IWAE estimate of log p(x), active units and
the KL per latent dimension.

All of them run forward passes only (``encode``/``decode``, never ``loss_and_grad``) and
accumulate in float64. With :math:`q(z|x) = N(\mu, \mathrm{diag}\,\sigma^2)` and
:math:`z = \mu + \sigma \epsilon`:

.. math::
    \mathrm{ELBO}(x) &= E_q[\log p(x|z)] - KL(q(z|x) \,\|\, N(0, I)) \\
    \log p(x) &\approx \log \frac1K \sum_{k=1}^K
        \frac{p(x|z_k)\,p(z_k)}{q(z_k|x)}, \qquad
    \log \frac{p(z)}{q(z|x)} = \tfrac12 \sum_j (\epsilon_j^2 - z_j^2 + \log \sigma_j^2)

(the last from :func:`npvae.kernels._reference.log_prior_ratio`, which training on the
IWAE bound uses too).

The IWAE estimate (Burda et al. 2016) is a lower bound on log p(x) whose expectation rises
with K towards log p(x); with K = 1 its expectation is the ELBO.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from npvae.core import checks as chk
from npvae.core.memory import check_memory
from npvae.kernels._reference import gaussian_kl, log_prior_ratio

__all__ = ["elbo_terms", "iwae_log_likelihood", "active_units", "kl_per_dimension",
           "EVAL_SEED"]

# The noise of every ELBO npvae reports: the validation ELBO of each epoch of training,
# VAE.score and `npvae eval` draw z from default_rng(EVAL_SEED), so that the three agree
# exactly on the same model and data (a one-sample estimate varies by tenths of a nat with
# the noise: on 2,000 sprites, 0.17 nats across 20 seeds).
EVAL_SEED = 0x5C0E

_ROWS = 1024  # rows per forward chunk
_MAX_ELEMENTS = 1 << 22  # decoder outputs held at once (k-chunk * rows * D)


def _rng(rng, model):
    rng = chk.generator(rng, "rng")
    return model.rng if rng is None else rng


def _kl_terms(mu, logvar):
    """Per-example, per-dimension KL(N(mu, exp(logvar)) || N(0, 1)) in float64."""
    return gaussian_kl(mu.astype(np.float64), logvar.astype(np.float64))


def _decode_nll(model, z, x, y):
    """-log p(x | z) for z of shape (S, n, Z) (S samples of n rows) -> (S, n), float64."""
    s, n, _ = z.shape
    yt = None if y is None else np.tile(y, (s, 1))
    out = model.decode(z.reshape(s * n, -1), yt, raw=True).astype(np.float64)
    return model.likelihood.nll(out, x.astype(np.float64)).reshape(s, n)


def elbo_terms(model, X, y=None, *, n_samples=1, rng=None, mu=None, logvar=None):
    """Per-example reconstruction term and KL of the ELBO.

    Parameters
    ----------
    model : VAEModel
    X : array_like (N, D)
    y : array_like (N, C), optional
        Metadata of a conditional model.
    n_samples : int, default 1
        Monte Carlo samples of z per example for the reconstruction term. They are drawn
        and decoded in chunks of at most about 4M decoder outputs, as in
        :func:`iwae_log_likelihood`, so memory does not grow with ``n_samples``.
    rng : numpy.random.Generator or int, optional
        Source of the noise (default: the model's generator).
    mu, logvar : array_like (N, Z), optional
        The Gaussian q(z|x) to score instead of the encoder's (a per-point optimised q*,
        see :mod:`npvae.inference.qstar`); give both or neither.

    Returns
    -------
    recon : ndarray (N,)
        Estimate of :math:`E_q[-\\log p(x|z)]`, summed over data dimensions.
    kl : ndarray (N,)
        :math:`KL(q(z|x) \\| p(z))` in closed form, summed over latent dimensions.
        The ELBO is ``-(recon + kl)``; a beta-VAE's loss is ``recon + beta * kl``.
    """
    X, y = model.check_input(X, y, x_name="X")
    n_samples = chk.positive_int(n_samples, "n_samples")
    rng = _rng(rng, model)
    n, d = X.shape
    if (mu is None) != (logvar is None):
        raise ValueError("pass both mu and logvar (the posterior to score), or neither")
    if mu is not None:
        shape = (n, model.latent_dim)
        mu, logvar = (np.asarray(a, np.float64) for a in (mu, logvar))
        if mu.shape != shape or logvar.shape != shape:
            raise ValueError(f"mu and logvar must have shape {shape}, got {mu.shape} and "
                             f"{logvar.shape}")
    recon, kl = np.empty(n), np.empty(n)
    for start in range(0, n, _ROWS):
        s = slice(start, min(start + _ROWS, n))
        xs, ys = X[s], None if y is None else y[s]
        m, lv = model.encode(xs, ys) if mu is None else (mu[s], logvar[s])
        kl[s] = _kl_terms(m, lv).sum(axis=1)
        std, nb = np.exp(0.5 * lv.astype(np.float64)), xs.shape[0]
        total = np.zeros(nb)
        kc = max(1, _MAX_ELEMENTS // (nb * d))  # samples per decoder pass; the draws
        for k0 in range(0, n_samples, kc):  # come out in the same order as in one pass
            eps = rng.standard_normal((min(kc, n_samples - k0), *m.shape))
            total += _decode_nll(model, m + std * eps, xs, ys).sum(axis=0)
        recon[s] = total / n_samples
    return recon, kl


def iwae_log_likelihood(model, X, y=None, *, k=100, rng=None, batch_size=256):
    """Importance-weighted estimate of log p(x) per example (Burda et al. 2016).

    Parameters
    ----------
    model : VAEModel
    X : array_like (N, D)
    y : array_like (N, C), optional
    k : int, default 100
        Importance samples per example; larger is tighter (and slower, linearly).
    rng : numpy.random.Generator or int, optional
        Default: the model's generator.
    batch_size : int, default 256
        Rows per chunk. The k samples are also split into chunks so that at most about
        4M decoder outputs are in memory at once.

    Returns
    -------
    ndarray (N,)
        ``logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k``, in nats.
    """
    X, y = model.check_input(X, y, x_name="X")
    k = chk.positive_int(k, "k")
    batch_size = chk.positive_int(batch_size, "batch_size")
    rng = _rng(rng, model)
    n, d = X.shape
    out = np.empty(n)
    rows = max(1, min(int(batch_size), n))
    check_memory(8 * k * rows, f"the IWAE estimate with k={k} importance samples for "
                 f"{rows} rows at a time", "use a smaller k or batch_size")
    for start in range(0, n, rows):
        s = slice(start, min(start + rows, n))
        xb, yb = X[s], None if y is None else y[s]
        mu, lv = model.encode(xb, yb)
        mu, lv = mu.astype(np.float64), lv.astype(np.float64)
        std, nb = np.exp(0.5 * lv), xb.shape[0]
        logw = np.empty((k, nb))
        kc = max(1, _MAX_ELEMENTS // (nb * d))
        for k0 in range(0, k, kc):
            kk = min(kc, k - k0)
            eps = rng.standard_normal((kk, nb, mu.shape[1]))
            z = mu + std * eps
            logw[k0:k0 + kk] = log_prior_ratio(eps, z, lv) - _decode_nll(model, z, xb, yb)
        out[s] = logsumexp(logw, axis=0) - np.log(k)
    return out


def active_units(model, X, y=None, *, threshold=0.01):
    r"""Count latent dimensions the model uses (Burda et al. 2016).

    A dimension j is active when :math:`\mathrm{Var}_x(E_{q(z|x)}[z_j]) > ` ``threshold``:
    its posterior mean moves with the input; an inactive one has collapsed to the prior.

    Returns
    -------
    count : int
    variance : ndarray (Z,)
        The variance over ``X`` of each dimension's posterior mean.
    """
    X, y = model.check_input(X, y, x_name="X")
    mu, _ = model.encode(X, y)
    var = mu.astype(np.float64).var(axis=0)
    return int((var > threshold).sum()), var


def kl_per_dimension(model, X, y=None):
    """Mean over ``X`` of KL(q(z_j|x) || N(0, 1)) for each latent dimension j, shape (Z,).

    Collapsed dimensions show a KL near 0; the sum over j is the mean KL term of the ELBO.
    """
    X, y = model.check_input(X, y, x_name="X")
    mu, lv = model.encode(X, y)
    return _kl_terms(mu, lv).mean(axis=0)
