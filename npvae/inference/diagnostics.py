r"""Convergence diagnostics of MCMC draws: split R-hat and the effective sample size.

Both take draws shaped ``(S, K, ...)``: S draws of K chains, any trailing shape (points,
latent dimensions), and return one value per trailing entry.

**Split R-hat** (Gelman et al., *Bayesian Data Analysis*, 3rd ed., 11.4). Each chain is cut
in halves, giving m = 2K chains of n = S // 2 draws. With W the mean within-chain variance
and B/n the variance of the chain means,

.. math::
    \widehat{\mathrm{var}}^+ = \frac{n-1}{n} W + \frac Bn, \qquad
    \hat R = \sqrt{\widehat{\mathrm{var}}^+ / W}.

Near 1 when the chains agree; splitting also catches a drifting chain.

**Effective sample size** (BDA3 11.5, with Geyer's initial monotone sequence as in Stan).
With :math:`\hat\gamma_{t}` the autocovariance at lag t averaged over chains,

.. math::
    \hat\rho_t = 1 - \frac{W - \hat\gamma_t}{\widehat{\mathrm{var}}^+}, \qquad
    P_k = \hat\rho_{2k} + \hat\rho_{2k+1}, \qquad
    \hat\tau = -1 + 2 \sum_{k=0}^{k^*} P_k, \qquad
    \mathrm{ESS} = \frac{K S}{\hat\tau},

where the sum stops before the first :math:`P_k \le 0` and the :math:`P_k` are made
non-increasing (Geyer 1992: for a reversible chain the true :math:`P_k` are positive and
decreasing, so what breaks that is noise). For an AR(1) chain :math:`\rho_t = \phi^t`, so
:math:`\tau = (1 + \phi)/(1 - \phi)`: the tests check this.
"""

from __future__ import annotations

import numpy as np

__all__ = ["split_rhat", "effective_sample_size"]

_CHUNK = 1 << 21  # draws x chains x entries per FFT block


def _as_draws(draws, min_draws):
    a = np.asarray(draws, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"draws must have shape (S, K, ...) (draws, chains, ...), got {a.shape}")
    if a.shape[0] < min_draws:
        raise ValueError(f"need at least {min_draws} draws per chain, got {a.shape[0]}")
    return a.reshape(a.shape[0], a.shape[1], -1), a.shape[2:]


def split_rhat(draws):
    """Split R-hat of each trailing entry of ``draws`` (S, K, ...); see the module doc."""
    a, tail = _as_draws(draws, 4)
    n = a.shape[0] // 2
    halves = np.concatenate([a[:n], a[a.shape[0] - n:]], axis=1)  # (n, 2K, M)
    w = halves.var(axis=0, ddof=1).mean(axis=0)
    b_n = halves.mean(axis=0).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * w + b_n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(var_plus / w)
    return r.reshape(tail)


def _autocovariance(x):
    """Biased autocovariance along axis 0 of x (S, ...), by FFT with zero padding."""
    s = x.shape[0]
    c = x - x.mean(axis=0)
    f = np.fft.rfft(c, n=2 * s, axis=0)
    return np.fft.irfft(f * np.conj(f), n=2 * s, axis=0)[:s] / s


def effective_sample_size(draws):
    """Effective sample size of each trailing entry of ``draws`` (S, K, ...), pooled over
    the K chains; see the module doc. A constant entry gets ESS = K S."""
    a, tail = _as_draws(draws, 4)
    s, k, m = a.shape
    out = np.empty(m)
    step = max(1, _CHUNK // (s * k))
    for lo in range(0, m, step):
        out[lo:lo + step] = _ess_block(a[:, :, lo:lo + step])
    return out.reshape(tail)


def _ess_block(a):
    s, k, _ = a.shape
    acov = _autocovariance(a)  # (S, K, M)
    w = acov[0].mean(axis=0) * s / (s - 1)  # mean within-chain variance, ddof=1
    var_plus = w * (s - 1) / s
    if k > 1:
        var_plus = var_plus + a.mean(axis=0).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (w - acov.mean(axis=1)) / var_plus  # (S, M)
    rho[0] = 1.0
    pairs = s // 2
    p = rho[:2 * pairs:2] + rho[1:2 * pairs:2]  # (pairs, M)
    keep = np.cumprod(p > 0, axis=0).astype(bool)  # up to the first non-positive pair
    p = np.minimum.accumulate(np.where(keep, p, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(keep, p, 0.0).sum(axis=0)
    tau = np.maximum(tau, 1.0 / np.log10(s * k))  # Stan's cap on antithetic chains
    ess = s * k / tau
    return np.where(var_plus > 0, ess, float(s * k))
