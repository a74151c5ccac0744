r"""The best Gaussian for each data point, q*, and the two gaps it measures (Cremer et al.
2018, "Inference suboptimality in variational autoencoders").

For one x, the encoder gives :math:`q(z|x) = N(\mu(x), \mathrm{diag}\, e^{\ell(x)})`. With the
decoder held fixed, :math:`q^*` is the diagonal Gaussian that maximises that point's ELBO
over its own 2Z numbers :math:`(\mu, \ell)`:

.. math::
    \mathrm{ELBO}(\mu, \ell) = E_{\epsilon}\big[\log p(x | \mu + e^{\ell/2}\epsilon)\big]
        - \mathrm{KL}(N(\mu, e^\ell) \,\|\, N(0, I)),

found by Adam on the reparameterised gradient (``n_samples`` draws per step; the gradient is
the one ``loss_and_grad`` uses, kernels ``sample_kl`` / ``sample_kl_backward``, with the
decoder's input gradient from :class:`~npvae.inference.joint.LogJoint`), all points in
parallel. The gaps, both in nats and both non-negative up to Monte-Carlo error:

.. math::
    \underbrace{\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q)}_{\text{amortisation gap}}, \qquad
    \underbrace{\log p(x) - \mathrm{ELBO}(q^*)}_{\text{approximation gap}}.

The first is what a better encoder could still win; the second is the price of a diagonal
Gaussian family, which only a richer q could win back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from npvae.core import checks as chk
from npvae.core.optim import Adam
from npvae.core.params import ParamBuffer
from npvae.inference.joint import LogJoint
from npvae.inference.metrics import elbo_terms
from npvae.inference.samplers import _progress, _rng

__all__ = ["QStar", "optimise_qstar"]

DECAY = 0.25  # step cut at each plateau
BETA2 = 0.99  # Adam's second-moment decay: the gradients shrink by orders of magnitude on
# the way (and to 0 at an exact posterior, see below); with 0.999 the memory of the large
# early ones held the steps near the optimum ~50x below lr


@dataclass
class QStar:
    """Per-point optimised Gaussians.

    Attributes
    ----------
    mu, logvar : ndarray (N, Z)
    elbo : ndarray (N,)
        ELBO(q*) per point, estimated with ``n_eval`` fresh samples.
    steps : ndarray (N,) of int
        Adam steps until the point's plateau (``max_steps`` if it never reached one).
    converged : ndarray (N,) of bool
        Whether the point stopped on a plateau rather than at ``max_steps``.
    seconds : float
    """

    mu: np.ndarray
    logvar: np.ndarray
    elbo: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    seconds: float


class _Fit:
    r"""The Adam fit of one batch of points.

    Adam moves each parameter by about ``lr`` per step whatever its gradient's scale, so
    the mean moves in units of the current sigma: Adam runs on an increment
    :math:`(\delta u, \delta\ell)` with gradient :math:`(\sigma\,\partial\mu,
    \partial\ell)`, and :math:`\mu \mathrel{+}= \sigma\,\delta u`. ``lr`` is then a
    fraction of the posterior's width, for a point with sigma 0.05 as for one with sigma 1.
    Each point takes its own fraction ``rate`` of the step (cut at plateaus, 0 once done).
    """

    def __init__(self, model, x, y, n_samples, mu, logvar, lr):
        self.model, self.L = model, n_samples
        self.joint = LogJoint(model, x, y, n_samples)
        n, z, dt = self.joint.n, model.latent_dim, model.dtype
        self.h = np.empty((n, 2 * z), dt)  # [mu | logvar], the encoder's output layout
        self.h[:, :z], self.h[:, z:] = mu, logvar
        self.params = ParamBuffer({"step": (n, 2 * z)}, dt)
        self.inc, self.g = self.params.view("step"), self.params.grad_view("step")
        self.adam = Adam(self.params, lr=lr, betas=(0.9, BETA2), backend=model.kernels.name)
        self.noise = np.empty((n_samples * n, z), dt)
        self.z = np.empty_like(self.noise)
        self.dz = np.empty_like(self.noise)
        self.kl_col = np.empty(z, dt)
        self.w = np.zeros(z, dt)
        self.tmp = np.empty_like(self.noise)
        self.zero, self.one = np.zeros((1, z), dt), np.ones((1, z), dt)
        self.no_const = np.zeros(1)
        self.lw, self.lz = np.empty(self.joint.rows), np.empty(self.joint.rows)
        self.ll = np.empty(self.joint.rows)
        self.sigma = np.empty((n, z), dt)
        self.sum = np.zeros((n, 2 * z))  # iterates summed over the current window
        self.rate = np.ones(n, dt)

    def step(self, rng):
        """One Adam step on every point's -ELBO; returns the per-point ELBO estimates."""
        k, n, z, h, L = self.model.kernels, self.joint.n, self.model.latent_dim, self.h, self.L
        self.sum += h
        rng.standard_normal(out=self.noise, dtype=self.noise.dtype)
        k.sample_kl(h, self.noise, self.z, self.kl_col)
        self.joint.log_likelihood(self.z, self.dz, out=self.ll)
        np.multiply(h[:, z:], 0.5, out=self.sigma)
        np.exp(self.sigma, out=self.sigma)
        # the path derivative: d/dz [log p(x, z) - log q(z)] = grad log p(x|z) - z + eps/sigma
        self.dz -= self.z
        np.divide(self.noise.reshape(L, n, z), self.sigma, out=self.tmp.reshape(L, n, z))
        self.dz += self.tmp
        self.dz *= -1.0 / L  # of -ELBO, averaged over the L draws
        k.sample_kl_backward(h, self.noise, self.dz, self.w, self.g)  # w = 0: no KL term
        self.g[:, :z] *= self.sigma
        # log p(x|z) + log p(z) - log q(z|x) = ll + (|eps|^2 - |z|^2 + sum logvar) / 2
        k.normal_log_density(self.noise, self.zero, self.one, self.no_const, self.lw,
                             self.tmp)
        k.normal_log_density(self.z, self.zero, self.one, self.no_const, self.lz, self.tmp)
        self.lw -= self.lz
        self.lw *= -1.0
        self.lw += self.ll
        elbo = self.lw.reshape(L, n).mean(axis=0) + 0.5 * h[:, z:].sum(axis=1, dtype=float)
        self.inc[...] = 0.0
        self.adam.step()  # inc = Adam's step, whatever the parameters' values
        self.inc *= self.rate[:, None]
        self.inc[:, :z] *= self.sigma
        h += self.inc
        return elbo

    def to_average(self, rows, count):
        """Set ``rows`` to their mean iterate over the last ``count`` steps (Polyak-Ruppert
        averaging: the iterates jitter around the optimum by the gradient noise)."""
        self.h[rows] = self.sum[rows] / count


def optimise_qstar(model, X, y=None, *, lr=0.03, n_samples=4, max_steps=3000,
                   check_every=50, patience=3, tol=0.02, decays=3, n_eval=100,
                   batch_size=None, rng=None, progress=False):
    r"""Fit q* for every row of ``X``, starting from the encoder's q(z|x).

    Parameters
    ----------
    model : VAEModel
    X : array_like (N, D)
    y : array_like (N, C), optional
    lr : float, default 0.03
        Adam's learning rate on :math:`(\mu, \ell)`.
    n_samples : int, default 4
        Reparameterised draws per point and step.
    max_steps : int, default 3000
    check_every, patience, tol, decays
        Plateau rule: every ``check_every`` steps a point's mean ELBO estimate over the
        window is compared with its best window so far; after ``patience`` windows in a row
        that did not beat it by ``tol`` nats the point is on a plateau. It then restarts
        from its average iterate of the last window with its step cut to ``DECAY`` times
        (``decays`` times), and after the last cut stops there. Optimisation ends when
        every point has stopped (or at ``max_steps``, from the last window's average).
    n_eval : int, default 100
        Fresh samples per point for the reported ELBO(q*) (``metrics.elbo_terms``).
    batch_size : int, optional
        Points fitted together (default: as many as keep ``n_samples`` x points <= 8192).
    rng : numpy.random.Generator or int, optional
    progress : bool

    Returns
    -------
    QStar
    """
    X, y = model.check_input(X, y, x_name="X")
    lr = chk.positive_float(lr, "lr")
    n_samples = chk.positive_int(n_samples, "n_samples")
    max_steps = chk.positive_int(max_steps, "max_steps")
    check_every = chk.positive_int(check_every, "check_every")
    patience = chk.positive_int(patience, "patience")
    decays = chk.positive_int(decays, "decays", minimum=0)
    tol = chk.nonnegative_float(tol, "tol")
    n_eval = chk.positive_int(n_eval, "n_eval")
    rng = _rng(rng)
    n = X.shape[0]
    size = chk.positive_int(batch_size or max(1, 8192 // n_samples), "batch_size")
    mu0, lv0 = model.encode(X, y)
    mu, lv = mu0.astype(np.float64), lv0.astype(np.float64)
    steps, converged = np.full(n, max_steps), np.zeros(n, bool)
    t0 = time.perf_counter()
    batches = -(-n // size)
    bar = _progress(batches * max_steps, f"q* for {n} points (steps, at most)", progress)
    for lo in range(0, n, size):
        s = slice(lo, min(lo + size, n))
        fit = _Fit(model, X[s], None if y is None else y[s], n_samples, mu0[s], lv0[s], lr)
        m = fit.joint.n
        best = np.full(m, -np.inf)
        stale, cuts = np.zeros(m, int), np.zeros(m, int)
        window = np.zeros(m)
        pace = model.kernels.pace
        for t in range(1, max_steps + 1):
            if pace is not None:  # as many threads as other processes leave cores free
                pace()
            window += fit.step(rng)
            bar.update(1)
            if t % check_every and t < max_steps:
                continue
            count = t % check_every or check_every
            mean = window / count
            window[...] = 0.0
            active = fit.rate > 0
            better = mean > best + tol
            best = np.where(better, mean, best)
            stale = np.where(better | ~active, 0, stale + 1)
            plateau = active & (stale >= patience)
            # a plateau: restart from the window's average iterate with a smaller rate,
            # or, after ``decays`` cuts, stop there
            fit.to_average(plateau | (active & (t == max_steps)), count)
            fit.sum[...] = 0.0
            stop = plateau & (cuts >= decays)
            cut = plateau & ~stop
            fit.rate[cut] *= DECAY
            cuts[cut] += 1
            stale[plateau] = 0
            best[cut] = -np.inf
            fit.rate[stop] = 0.0
            steps[s][stop] = t
            converged[s] |= stop
            if not np.any(fit.rate > 0):
                break
        z = model.latent_dim
        mu[s], lv[s] = fit.h[:, :z], fit.h[:, z:]
        bar.update(max_steps - t)  # the steps a plateau made unnecessary
    bar.close()
    recon, kl = elbo_terms(model, X, y, n_samples=n_eval, rng=rng, mu=mu, logvar=lv)
    return QStar(mu, lv, -(recon + kl), steps, converged, time.perf_counter() - t0)
