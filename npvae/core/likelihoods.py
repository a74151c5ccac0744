r"""Decoder likelihoods p(x | z): the decoder emits their parameters, these score the data.

Every likelihood has the same surface:

* ``nll_and_grad(out, x, scale, dout, kernels)``: the negative log-likelihood summed over
  rows and dimensions, with ``dout = scale * d(nll)/d(out)`` written and the gradients of
  the likelihood's own parameters (a learned variance) written into the model's buffer.
  This is the hot path; it runs in one fused kernel.
* ``nll_rows_and_grad(out, x, row_scale, dout, nll, kernels)``: the same kept per row,
  ``nll[r]`` written and row ``r``'s gradient scaled by ``row_scale[r]``: for objectives
  that weight samples unequally (IWAE, M2) and for samplers over z.
* ``nll(out, x)``: per-row NLL, in plain NumPy, for evaluation.
* ``mean(out, kernels)`` and ``sample(out, rng)``: E[x | z] and a draw from p(x | z).
* ``validate(x)``: rejects data outside the likelihood's support.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from npvae.core import checks as chk
from npvae.kernels import get_kernels

__all__ = [
    "Likelihood", "Bernoulli", "GaussianFixed", "GaussianScalar", "GaussianDiagonal",
    "LIKELIHOODS", "get_likelihood",
]

LOG_2PI = float(np.log(2 * np.pi))
LIKELIHOODS = {}  # name -> class; a subclass that sets ``name`` registers itself


class Likelihood:
    """Base class; see the module docstring for the interface. A subclass that sets
    ``name`` is registered in :data:`LIKELIHOODS` (the CLI's choices and the test cases
    are read from there)."""

    name = ""
    # the constructor's keyword arguments (which config() returns), each with the check a
    # value read from a file must pass (npvae.training.schema)
    options = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # an abstract helper class: not registered
            return
        taken = LIKELIHOODS.get(cls.name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise TypeError(f"likelihood {cls.__name__}: the name {cls.name!r} is taken by "
                            f"{taken.__name__}")
        LIKELIHOODS[cls.name] = cls

    def param_shapes(self, dim):
        """Names and shapes of learned parameters of the likelihood (none by default)."""
        return {}

    def bind(self, params):
        pass

    def initialize(self):
        pass

    def validate(self, x, argname="x"):
        pass

    def config(self):
        """JSON-serialisable constructor arguments that rebuild this likelihood (one per
        name in :attr:`options`)."""
        return {}

    def spec(self):
        """``{"name": ..., **config()}``: what a checkpoint stores, and what
        :func:`get_likelihood` rebuilds the likelihood from."""
        return {"name": self.name, **self.config()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Bernoulli(Likelihood):
    r"""Bernoulli with logits ``l`` (the decoder output): :math:`p(x=1|z) = \sigma(l)`.

    .. math::
        -\log p(x|l) = \max(l, 0) - x l + \log(1 + e^{-|l|}), \qquad
        \partial_l = \sigma(l) - x

    Targets may be any value in [0, 1] (the "continuous Bernoulli-like" use of binary
    cross-entropy on grey levels is common and accepted).
    """

    name = "bernoulli"

    def validate(self, x, argname="x"):
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{argname} has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs "
                "targets in [0, 1]; scale the data (e.g. divide 8-bit images by 255) or use "
                "likelihood='gaussian'"
            )

    def nll_and_grad(self, out, x, scale, dout, kernels=None):
        k = kernels or get_kernels()
        return k.bernoulli_nll(out, x, scale, dout)

    def nll_rows_and_grad(self, out, x, row_scale, dout, nll, kernels=None):
        k = kernels or get_kernels()
        k.bernoulli_nll_rows(out, x, row_scale, dout, nll)

    def nll(self, out, x):
        xt = np.tile(x, (out.shape[0] // x.shape[0], 1))
        e = np.maximum(out, 0) - xt * out + np.log1p(np.exp(-np.abs(out)))
        return e.sum(axis=1)

    def mean(self, out, kernels=None):
        k = kernels or get_kernels()
        return k.sigmoid(out, np.empty_like(out))

    def sample(self, out, rng):
        return (rng.random(out.shape) < expit(out)).astype(out.dtype)


class _Gaussian(Likelihood):
    r"""Gaussian with mean ``m`` (the decoder output) and log-variance ``v``.

    .. math::
        -\log p(x|m) = \tfrac12(\log 2\pi + v + (x - m)^2 e^{-v}), \quad
        \partial_m = (m - x) e^{-v}, \quad \partial_v = \tfrac12 (1 - (x - m)^2 e^{-v})
    """

    options = {"variance": chk.positive_float}

    def __init__(self, variance=1.0):
        variance = float(variance)
        if not (np.isfinite(variance) and variance > 0):
            raise ValueError(f"variance must be a positive finite number, got {variance}")
        self.variance = variance
        self.logvar = self.dlogvar = None

    def config(self):
        return {"variance": self.variance}

    def nll_and_grad(self, out, x, scale, dout, kernels=None):
        k = kernels or get_kernels()
        return k.gaussian_nll(out, x, self.logvar, scale, dout, self.dlogvar)

    def nll_rows_and_grad(self, out, x, row_scale, dout, nll, kernels=None):
        k = kernels or get_kernels()
        k.gaussian_nll_rows(out, x, self.logvar, row_scale, dout, self.dlogvar, nll)

    def nll(self, out, x):
        xt = np.tile(x, (out.shape[0] // x.shape[0], 1))
        v = self.logvar
        e = 0.5 * (LOG_2PI + v + (xt - out) ** 2 * np.exp(-v))
        return e.sum(axis=1)

    def mean(self, out, kernels=None):
        return np.array(out, copy=True)

    def sample(self, out, rng):
        std = np.exp(0.5 * self.logvar)
        return (out + std * rng.standard_normal(out.shape)).astype(out.dtype)


class GaussianFixed(_Gaussian):
    """Gaussian with a fixed variance (default 1, which makes the NLL half the squared error
    plus a constant)."""

    name = "gaussian"

    def bind(self, params):
        self.logvar = np.full(1, np.log(self.variance), dtype=params.dtype)
        self.dlogvar = np.zeros(1, dtype=params.dtype)  # computed, never used


class GaussianScalar(_Gaussian):
    """Gaussian with one learned variance shared by every dimension
    (parameter ``likelihood.logvar``, shape (1,)); ``variance`` is its initial value."""

    name = "gaussian-scalar"

    def param_shapes(self, dim):
        return {"likelihood.logvar": (1,)}

    def bind(self, params):
        self.logvar = params.view("likelihood.logvar")
        self.dlogvar = params.grad_view("likelihood.logvar")

    def initialize(self):
        self.logvar[...] = np.log(self.variance)


class GaussianDiagonal(GaussianScalar):
    """Gaussian with a learned variance per data dimension (parameter ``likelihood.logvar``,
    shape (D,)); ``variance`` is their initial value."""

    name = "gaussian-diag"

    def param_shapes(self, dim):
        return {"likelihood.logvar": (int(dim),)}


def get_likelihood(spec, defaults=None, **options):
    """Return a :class:`Likelihood` from a name (``"bernoulli"``, ``"gaussian"``,
    ``"gaussian-scalar"``, ``"gaussian-diag"``) with constructor ``options``, a spec as
    :meth:`Likelihood.spec` writes it (``{"name": "gaussian", "variance": 0.5}``) or an
    instance.

    ``defaults`` are options given to the likelihoods that take them (in their ``options``)
    and left out for the others: ``VAEModel(variance=...)`` passes its ``variance`` so."""
    if isinstance(spec, Likelihood):
        return spec
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        spec, options = spec["name"], {**{k: v for k, v in spec.items() if k != "name"},
                                       **options}
    cls = LIKELIHOODS.get(spec.lower()) if isinstance(spec, str) else None
    if cls is None:
        raise ValueError(
            f"unknown likelihood {spec!r}; choose one of {', '.join(LIKELIHOODS)} "
            "or pass an npvae.core.likelihoods.Likelihood instance"
        )
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise ValueError(f"likelihood {cls.name!r} takes no {', '.join(unknown)} (its options: "
                         f"{', '.join(cls.options) or 'none'})")
    kept = {k: v for k, v in (defaults or {}).items() if k in cls.options}
    return cls(**{**kept, **options})
