r"""The log-density every sampler and estimator over z works on, and its gradient in z.

For a trained decoder and fixed data :math:`x_n`, with K chains per data point:

.. math::
    \log p(x, z) = \log p(x | z) + \log p(z), \qquad
    \nabla_z \log p(x, z) = J_{\mathrm{dec}}(z)^\top \nabla_o \log p(x | o) - z,

where :math:`o` is the decoder output (logits or a Gaussian mean). The gradient is the
decoder's backward to its input (:meth:`npvae.core.layers.MLP.backward_input`): one GEMM per
layer for all K x N rows, no parameter gradients. Rows are **chain-major**, ``r = k * N + n``
(chain ``k`` of data point ``n = r % N``), the layout the per-row likelihood kernels
(``bernoulli_nll_rows`` / ``gaussian_nll_rows``) score against ``x[r % N]``. Derived in
docs/math.md, section 12.

Samplers and annealing see one family of densities (:class:`Path`):

.. math::
    \log f_\beta(z) = \log p_0(z) + \beta\,[\log p(x, z) - \log p_0(z)], \qquad
    0 \le \beta \le 1,

with :math:`p_0` the prior or the encoder's :math:`q(z|x)`. :math:`\beta = 1` is the
posterior (up to its normaliser :math:`p(x)`), the target of MCMC; annealed importance
sampling moves :math:`\beta` from 0 to 1. The parts :math:`\log p_0`, the log-ratio
:math:`\log p(x,z) - \log p_0(z)` and their gradients are kept apart (:class:`Point`), so a
change of :math:`\beta` needs no new decoder pass.
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.kernels import get_kernels

__all__ = ["LogJoint", "Point", "Path", "StandardNormal", "DiagonalGaussian", "initial_z"]

LOG_2PI = float(np.log(2 * np.pi))
MAX_WORKSPACE_BYTES = 4 << 30


class LogJoint:
    r"""log p(x, z) and its gradient in z for ``chains`` chains of each of N data points.

    Parameters
    ----------
    model : VAEModel
        A built model; its decoder and likelihood are used as they are (never changed).
    x : array_like (N, D)
    y : array_like (N, C), optional
        Metadata of a conditional model: the decoder input is ``[z | y]`` and the gradient
        is its first Z columns.
    chains : int, default 1
        K, chains per data point; the rows are ``R = K N``, chain-major.

    Notes
    -----
    Every buffer is allocated here, once; a call allocates nothing. A likelihood with a
    learned variance writes its ``dlogvar`` block of ``model.params.grad`` on every call,
    as ``loss_and_grad`` does (the block is scratch between training steps).
    """

    def __init__(self, model, x, y=None, chains=1):
        self.model = model
        self.x, self.y = model.check_input(x, y)
        n, d = self.x.shape
        self.chains = chk.positive_int(chains, "chains")
        self.n, self.rows, self.latent_dim = n, self.chains * n, model.latent_dim
        self.dtype, self.kernels = model.dtype, model.kernels
        widths = sum(model.decoder.sizes) + d
        need = self.rows * (2 * widths + 16) * self.dtype.itemsize
        if need > MAX_WORKSPACE_BYTES:
            raise ValueError(
                f"{self.chains} chains x {n} points = {self.rows} rows need "
                f"{need / 2**30:.1f} GiB of decoder workspace (limit "
                f"{MAX_WORKSPACE_BYTES / 2**30:.0f} GiB); use fewer chains or pass fewer "
                "points at a time")
        r, z, c = self.rows, self.latent_dim, model.cond_dim
        self.dec_in = None
        if c:
            self.dec_in = np.empty((r, z + c), self.dtype)
            self.dec_in.reshape(self.chains, n, z + c)[:, :, z:] = self.y
        self.ws = model.decoder.workspace(r, self.dtype)
        self.dout = np.empty((r, d), self.dtype)
        self.minus_one = np.full(r, -1.0, self.dtype)  # row scale: dout = grad of log p(x|o)
        self.nll = np.empty(r)
        self.loglik = np.empty(r)
        self.logp = np.empty(r)
        self.prior = StandardNormal(z, self.dtype, self.kernels)
        self.gprior = np.empty((r, z), self.dtype)
        self.evaluations = 0  # decoder passes over all rows, for throughput reports

    def _check_z(self, z):
        if z.shape != (self.rows, self.latent_dim) or z.dtype != self.dtype:
            raise ValueError(f"z must be a ({self.rows}, {self.latent_dim}) array of "
                             f"{self.dtype} (chains x points rows, chain-major), got "
                             f"{z.shape} {z.dtype}")

    def log_likelihood(self, z, grad=None, out=None):
        r"""log p(x | z) per row, and with ``grad`` given its gradient in z written there.

        Parameters
        ----------
        z : ndarray (R, Z) of the model's dtype
        grad : ndarray (R, Z), optional
            Written with :math:`\nabla_z \log p(x_{r \bmod N} | z_r)`.

        out : ndarray (R,) of float64, optional
            Where to write the result (default: an internal buffer, overwritten by the
            next call).

        Returns
        -------
        ndarray (R,) of float64
        """
        self._check_z(z)
        return self._log_likelihood(z, grad, out)

    def _log_likelihood(self, z, grad, out):
        dec, k, zd = self.model.decoder, self.kernels, self.latent_dim
        inp = z
        if self.dec_in is not None:
            inp = self.dec_in
            inp[:, :zd] = z
        o = dec.forward(inp, self.ws, k)
        # row scale -1: dout is the gradient of log p(x|o), not of the NLL
        self.model.likelihood.nll_rows_and_grad(o, self.x, self.minus_one, self.dout,
                                                self.nll, k)
        out = self.loglik if out is None else out
        np.negative(self.nll, out=out)
        self.evaluations += 1
        if grad is not None:
            if self.dec_in is None:  # the first layer's input gradient goes into grad
                dec.backward_input(self.dout, inp, self.ws, k, out=grad)
            else:
                grad[...] = dec.backward_input(self.dout, inp, self.ws, k)[:, :zd]
        return out

    def __call__(self, z, grad=None):
        r"""log p(x, z) per row (float64, an internal buffer), and
        :math:`\nabla_z \log p(x, z)` written into ``grad`` if given."""
        ll = self.log_likelihood(z, grad)
        self.prior.log_density(z, self.logp, self.gprior)
        self.logp += ll
        if grad is not None:
            grad += self.gprior
        return self.logp


class StandardNormal:
    r"""The prior :math:`N(0, I)`: :math:`\log p(z) = -\tfrac12 (|z|^2 + Z \log 2\pi)`,
    :math:`\nabla = -z` (kernel ``normal_log_density``)."""

    def __init__(self, latent_dim, dtype, kernels=None):
        self.kernels = kernels or get_kernels()
        self.mu = np.zeros((1, latent_dim), dtype)
        self.inv_var = np.ones((1, latent_dim), dtype)
        self.std = self.inv_var
        self.const = np.full(1, -0.5 * latent_dim * LOG_2PI)

    def log_density(self, z, out, grad):
        """Write the log-density of every row of ``z`` into ``out`` (R,) and its gradient
        into ``grad`` (R, Z)."""
        self.kernels.normal_log_density(z, self.mu, self.inv_var, self.const, out, grad)
        return out

    def sample(self, rng, out):
        """Write a draw for every row into ``out`` (R, Z), chain-major."""
        rng.standard_normal(out=out, dtype=out.dtype)
        if self.mu.shape[0] > 1:
            o = out.reshape(-1, *self.mu.shape)
            o *= self.std
            o += self.mu
        return out


class DiagonalGaussian(StandardNormal):
    r"""A diagonal Gaussian per data point, :math:`N(\mu_n, \mathrm{diag}\,e^{\ell_n})`,
    the same for each chain of the point (the encoder's q(z|x) as an annealing start).

    .. math::
        \log q(z) = -\tfrac12 \sum_j \big((z_j - \mu_j)^2 e^{-\ell_j} + \ell_j
        + \log 2\pi\big), \qquad \nabla = -(z - \mu) e^{-\ell}
    """

    def __init__(self, mu, logvar, dtype, kernels=None):
        self.kernels = kernels or get_kernels()
        mu, lv = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
        self.mu = mu.astype(dtype)
        self.std = np.exp(0.5 * lv).astype(dtype)
        self.inv_var = np.exp(-lv).astype(dtype)
        self.const = -0.5 * (lv.sum(axis=1) + mu.shape[1] * LOG_2PI)


class Point:
    r"""The state of R chains under a :class:`Path`: ``z`` and the parts of
    :math:`\log f_\beta(z) = \mathrm{lb} + \beta\,\mathrm{lr}` with their gradients.

    Attributes
    ----------
    z : ndarray (R, Z)
    lb, lr : ndarray (R,) of float64
        :math:`\log p_0(z)` and :math:`\log p(x, z) - \log p_0(z)`.
    g_lb, g_lr : ndarray (R, Z) or None
        Their gradients in z (None for a sampler that needs no gradient).
    """

    def __init__(self, rows, latent_dim, dtype, grad=True, kernels=None):
        self.kernels = kernels or get_kernels()
        self.z = np.zeros((rows, latent_dim), dtype)
        self.lb, self.lr = np.zeros(rows), np.zeros(rows)
        self.g_lb = np.zeros((rows, latent_dim), dtype) if grad else None
        self.g_lr = np.zeros((rows, latent_dim), dtype) if grad else None

    def logp(self, beta, out):
        r""":math:`\log f_\beta` per row, written into ``out``."""
        np.multiply(self.lr, beta, out=out)
        out += self.lb
        return out

    def grad(self, beta, out):
        r""":math:`\nabla_z \log f_\beta = \nabla \mathrm{lb} + \beta \nabla \mathrm{lr}`."""
        np.multiply(self.g_lr, beta, out=out)
        out += self.g_lb
        return out

    def arrays(self):
        return [a for a in (self.z, self.lb, self.lr, self.g_lb, self.g_lr) if a is not None]

    def take(self, other, where):
        """Copy ``other``'s rows where ``where`` (R,) is True: a select, never a blend, so a
        rejected row's NaN or inf cannot reach the kept state."""
        for mine, theirs in zip(self.arrays(), other.arrays(), strict=True):
            if mine.ndim == 1:
                mine, theirs = mine[:, None], theirs[:, None]
            self.kernels.select_rows(mine, theirs, where)

    def finite(self, out, scratch):
        """``out`` (R,) = every part of the row is finite."""
        np.isfinite(self.lb, out=out)
        out &= np.isfinite(self.lr)
        for g in (self.z, self.g_lb, self.g_lr):
            if g is not None:
                np.isfinite(g, out=scratch)
                out &= scratch.all(axis=1)
        return out


class Path:
    r"""The densities :math:`\log f_\beta(z) = \log p_0(z) + \beta [\log p(x,z) - \log p_0(z)]`.

    Parameters
    ----------
    joint : LogJoint
    base : DiagonalGaussian, optional
        :math:`p_0` with one row per data point; default the prior, for which the
        log-ratio is :math:`\log p(x|z)`.
    """

    def __init__(self, joint, base=None):
        self.joint = joint
        self.base = joint.prior if base is None else base
        self.prior_base = base is None
        r, z = joint.rows, joint.latent_dim
        if base is not None and base.mu.shape != (joint.n, z):
            raise ValueError(f"the base density needs one row per data point, shape "
                             f"({joint.n}, {z}), got {base.mu.shape}")
        self._prior = None if self.prior_base else np.empty(r)
        self._scratch = np.empty((r, z), joint.dtype)

    @property
    def rows(self):
        return self.joint.rows

    def new_point(self, grad=True):
        j = self.joint
        return Point(j.rows, j.latent_dim, j.dtype, grad, j.kernels)

    def evaluate(self, p, values=True):
        r"""Fill ``p``'s parts at ``p.z`` (gradients too when ``p`` holds them).

        ``values=False`` promises that only the gradients will be read (a leapfrog step
        inside a trajectory): with the prior as base, ``lb`` is then left stale and
        :math:`\nabla \mathrm{lb} = -z` is all that is computed of it."""
        self.joint._log_likelihood(p.z, p.g_lr, p.lr)  # the points' shapes are the joint's
        if self.prior_base and not values and p.g_lb is not None:
            np.negative(p.z, out=p.g_lb)
            return p
        g_lb = self._scratch if p.g_lb is None else p.g_lb
        self.base.log_density(p.z, p.lb, g_lb)
        if not self.prior_base:  # lr = log p(x|z) + log p(z) - log q(z|x)
            self.joint.prior.log_density(p.z, self._prior, self._scratch)
            p.lr += self._prior
            p.lr -= p.lb
            if p.g_lr is not None:
                p.g_lr += self._scratch
                p.g_lr -= p.g_lb
        return p


def initial_z(joint, init, rng, mu=None, logvar=None, out=None):
    """Starting z of every row, written into ``out`` (R, Z): ``"prior"`` draws z ~ N(0, I),
    ``"encoder"`` draws z ~ q(z|x) (``mu``, ``logvar`` (N, Z)), or an array (K, N, Z)."""
    out = np.empty((joint.rows, joint.latent_dim), joint.dtype) if out is None else out
    if isinstance(init, str):
        if init == "prior":
            joint.prior.sample(rng, out)
        elif init == "encoder":
            DiagonalGaussian(mu, logvar, joint.dtype, joint.kernels).sample(rng, out)
        else:
            raise ValueError(f"init must be 'prior', 'encoder' or an array, got {init!r}")
    else:
        a = np.asarray(init, dtype=joint.dtype)
        if a.shape not in ((joint.chains, joint.n, joint.latent_dim), out.shape):
            raise ValueError(f"an init array must have shape ({joint.chains}, {joint.n}, "
                             f"{joint.latent_dim}), got {a.shape}")
        out[...] = a.reshape(out.shape)
    return out
