r"""MCMC over z for fixed x: random-walk Metropolis-Hastings, MALA and HMC on the decoder's
true posterior :math:`p(z|x) \propto p(x|z)\,p(z)`.

K chains for each of N data points run as one batch of R = K N rows (chain-major, see
:mod:`npvae.inference.joint`), so every step is one batched decoder pass per density
evaluation. A step proposes z' for every row and keeps it where

.. math::
    \log u < \log f(z') - \log f(z) + \log \frac{g(z | z')}{g(z' | z)}, \qquad u \sim U(0, 1),

the Metropolis-Hastings rule, whose ratio needs no :math:`p(x)`. The kept state is *selected*
row by row (kernel ``select_rows``), never blended as ``a * new + (1 - a) * old``: a
rejected proposal whose energy or gradient is inf or NaN (``0 * inf = NaN``) cannot reach it,
and a proposal with any non-finite part is always rejected.

* **Random walk**: :math:`z' = z + \epsilon\, s \odot \xi`, symmetric, so the ratio is
  :math:`f(z')/f(z)`; no gradient.
* **HMC** (Neal 2011): momentum :math:`v \sim N(0, I)`, L leapfrog steps of size
  :math:`\epsilon` for :math:`H = -\log f(z) + \tfrac12 |v|^2` with the diagonal mass matrix
  :math:`M^{-1} = \mathrm{diag}(s^2)`, accept on :math:`e^{H - H'}`.
* **MALA** is HMC with one leapfrog step: :math:`z' = z + \tfrac{\epsilon^2}2 s^2 \nabla
  \log f + \epsilon s \xi`, and its Hastings ratio equals HMC's kinetic-energy term
  (derived in docs/math.md).

The step size is one number per data point, adapted during warm-up only (a Robbins-Monro
walk of :math:`\log\epsilon` towards a target acceptance, gains decaying, clipped to
[``STEP_MIN``, ``STEP_MAX``]), then frozen at the mean of :math:`\log\epsilon` over the
second half of warm-up; the draws are kept after warm-up. The scale ``s`` (per point and
latent dimension) is fixed before sampling: the encoder's posterior standard deviation by
default, which whitens dimensions the model uses (small sigma) against those it ignores
(sigma near 1). Every random draw comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from npvae.core import checks as chk
from npvae.inference import diagnostics
from npvae.inference.joint import LogJoint, Path, initial_z
from npvae.inference.transitions import HMC, RandomWalk

__all__ = ["RandomWalk", "HMC", "StepSize", "Chains", "sample_posterior", "METHODS",
           "TARGET_ACCEPT"]

METHODS = ("rwmh", "mala", "hmc")
TARGET_ACCEPT = {"rwmh": 0.234, "mala": 0.574, "hmc": 0.65}  # Roberts & Rosenthal; Neal
STEP_MIN, STEP_MAX = 1e-6, 10.0


class StepSize:
    r"""Per-point step sizes, adapted towards a target acceptance while :attr:`adapting`.

    :math:`\log\epsilon_{t+1} = \mathrm{clip}(\log\epsilon_t + (t + 1)^{-0.6}
    (\bar a_t - a^*),\ \log \mathrm{STEP\_MIN},\ \log \mathrm{STEP\_MAX})`, with
    :math:`\bar a_t` a point's mean acceptance probability over its chains. :meth:`freeze`
    ends the adaptation at the mean :math:`\log\epsilon` of the second half of warm-up.
    ``value`` (N,) in the chains' dtype is what the kernels read.
    """

    def __init__(self, initial, target, chains, warmup, dtype):
        self.log = np.log(np.clip(np.asarray(initial, np.float64), STEP_MIN, STEP_MAX))
        self.target, self.chains, self.warmup = float(target), int(chains), int(warmup)
        self.t = 0
        self.adapting = warmup > 0
        self._sum, self._count = np.zeros_like(self.log), 0
        self.value = np.exp(self.log).astype(dtype)
        self.warmup_seconds = 0.0

    def update(self, accept_prob):
        """One adaptation step from the rows' acceptance probabilities (R,)."""
        if not self.adapting:
            raise RuntimeError("the step size is frozen: adaptation happens in warm-up only")
        a = accept_prob.reshape(self.chains, -1).mean(axis=0)
        self.log += (self.t + 1.0) ** -0.6 * (a - self.target)
        np.clip(self.log, np.log(STEP_MIN), np.log(STEP_MAX), out=self.log)
        self.t += 1
        if self.t > self.warmup // 2:
            self._sum += self.log
            self._count += 1
        self.value[...] = np.exp(self.log)

    def freeze(self):
        if self.adapting and self._count:
            self.log = self._sum / self._count
            self.value[...] = np.exp(self.log)
        self.adapting = False


@dataclass
class Chains:
    """MCMC draws and what it took to get them.

    Attributes
    ----------
    samples : ndarray (S, K, N, Z)
        Draws kept after warm-up: S per chain, K chains for each of N points.
    accept : ndarray (N,)
        Fraction of proposals accepted after warm-up, per point.
    step_size : ndarray (N,)
        The frozen step size of each point.
    seconds, warmup_seconds : float
        Wall time of the kept draws and of warm-up.
    evaluations : int
        Decoder passes over all R rows (forward, plus backward for MALA and HMC).
    """

    method: str
    samples: np.ndarray
    accept: np.ndarray
    step_size: np.ndarray
    seconds: float
    warmup_seconds: float
    evaluations: int
    n_leapfrog: int = 1
    extra: dict = field(default_factory=dict)

    def mean(self):
        """Posterior mean per point, (N, Z)."""
        return self.samples.mean(axis=(0, 1), dtype=np.float64)

    def cov(self):
        """Posterior covariance per point, (N, Z, Z)."""
        s = self.samples.astype(np.float64)
        c = s - s.mean(axis=(0, 1))
        return np.einsum("sknj,sknl->njl", c, c) / (c.shape[0] * c.shape[1] - 1)

    def ess(self):
        """Effective sample size per point and latent dimension, (N, Z)."""
        return diagnostics.effective_sample_size(self.samples)

    def rhat(self):
        """Split R-hat per point and latent dimension, (N, Z)."""
        return diagnostics.split_rhat(self.samples)


def _rng(rng):
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or a seed, got {type(rng)}")
    return rng


def sample_posterior(model, X, y=None, *, method="hmc", n_samples=1000, warmup=500, chains=4,
                     init="encoder", step_size=None, target_accept=None, n_leapfrog=10,
                     jitter=0.2, scale="encoder", thin=1, rng=None, progress=False):
    r"""Draw from the decoder's posterior :math:`p(z|x)` of each row of ``X`` by MCMC.

    Parameters
    ----------
    model : VAEModel
    X : array_like (N, D)
    y : array_like (N, C), optional
        Metadata of a conditional model.
    method : {"hmc", "mala", "rwmh"}
    n_samples : int
        Draws kept per chain (after ``thin``).
    warmup : int
        Transitions before the kept draws, during which the step size adapts.
    chains : int
        K chains per data point, run together.
    init : {"encoder", "prior"} or array (K, N, Z)
        Where the chains start: z ~ q(z|x), z ~ N(0, I), or given.
    step_size : float or array (N,), optional
        The initial (with ``warmup > 0``) or fixed step size; default 0.5 (HMC, MALA) or
        2.38 / sqrt(Z) (random walk), in units of ``scale``.
    target_accept : float, optional
        Default :data:`TARGET_ACCEPT` of the method.
    n_leapfrog : int
        Leapfrog steps per HMC transition (MALA uses 1).
    jitter : float, default 0.2
        HMC only: each transition's step is the adapted one times U(1 - jitter,
        1 + jitter) (see :meth:`HMC.step`).
    scale : "encoder", None or array (N, Z)
        Per-dimension scale of the proposals (a diagonal mass matrix): the encoder's sigma,
        none (1), or given.
    thin : int
        Keep every ``thin``-th draw.
    rng : numpy.random.Generator or int, optional
        The source of every random draw; a seed repeats the chains exactly.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Chains
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_samples = chk.positive_int(n_samples, "n_samples")
    warmup = chk.positive_int(warmup, "warmup", minimum=0)
    thin = chk.positive_int(thin, "thin")
    rng = _rng(rng)
    joint = LogJoint(model, X, y, chains)
    path = Path(joint)
    mu, logvar = model.encode(joint.x, joint.y)
    scale_rows = None
    if isinstance(scale, str) and scale == "encoder":
        scale_rows = np.exp(0.5 * logvar.astype(np.float64))
    elif scale is not None and not isinstance(scale, str):
        s = np.asarray(scale, np.float64)
        if s.shape != (joint.n, joint.latent_dim) or not np.all(s > 0) or not np.all(
                np.isfinite(s)):
            raise ValueError(f"scale must be positive and finite, shape ({joint.n}, "
                             f"{joint.latent_dim}), got {s.shape}")
        scale_rows = s
    elif scale is not None:
        raise ValueError(f"scale must be 'encoder', None or an array, got {scale!r}")
    if method == "rwmh":
        kernel = RandomWalk(path, scale_rows)
        default_step = 2.38 / np.sqrt(joint.latent_dim)
    else:
        kernel = HMC(path, 1 if method == "mala" else n_leapfrog, scale_rows,
                     jitter if method == "hmc" else 0.0)
        default_step = 0.5
    if step_size is None:
        step_size = default_step
    step0 = np.broadcast_to(np.asarray(step_size, np.float64), (joint.n,))
    if not (np.all(step0 > 0) and np.all(np.isfinite(step0))):
        raise ValueError(f"step_size must be positive and finite, got {step_size!r}")
    target = TARGET_ACCEPT[method] if target_accept is None else float(target_accept)
    if not 0 < target < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    steps = StepSize(step0, target, joint.chains, warmup, joint.dtype)

    state = path.new_point(grad=method != "rwmh")
    initial_z(joint, init, rng, mu, logvar, state.z)
    with np.errstate(all="ignore"):
        path.evaluate(state)
    ok = np.empty(path.rows, bool)
    if not state.finite(ok, np.empty(state.z.shape, bool)).all():
        raise ValueError(f"log p(x, z) or its gradient is not finite at {int((~ok).sum())} "
                         "starting points; start from init='prior' or check the model")
    total = warmup + n_samples * thin
    samples = np.empty((n_samples, joint.chains, joint.n, joint.latent_dim), joint.dtype)
    accepted = np.zeros(path.rows)
    bar = _progress(total, f"{method} x {path.rows} chains", progress)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):  # a NaN proposal is rejected, and need not warn
        _run(kernel, state, steps, samples, accepted, warmup, thin, total, rng, bar)
    if warmup == total:
        steps.freeze()
    t1 = time.perf_counter()
    t_warm = t0 + steps.warmup_seconds
    acc = (accepted / (n_samples * thin)).reshape(joint.chains, joint.n).mean(axis=0)
    return Chains(method, samples, acc, np.exp(steps.log), t1 - t_warm, t_warm - t0,
                  total * kernel.evaluations_per_step, getattr(kernel, "n_leapfrog", 1))


def _run(kernel, state, steps, samples, accepted, warmup, thin, total, rng, bar):
    t0 = time.perf_counter()
    pace = kernel.k.pace
    for t in range(total):
        if pace is not None:  # as many threads as other processes leave cores free
            pace()
        if t == warmup:
            steps.freeze()
            steps.warmup_seconds = time.perf_counter() - t0
        prob = kernel.step(state, steps.value, 1.0, rng)
        if t < warmup:
            steps.update(prob)
        else:
            np.add(accepted, 1.0, out=accepted, where=kernel.accept)
            j, r = divmod(t - warmup, thin)
            if r == thin - 1:
                samples[j] = state.z.reshape(samples.shape[1:])
        bar.update(1)
    bar.close()
    if warmup == total:
        steps.warmup_seconds = time.perf_counter() - t0


def _progress(total, desc, show):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, leave=False, mininterval=0.5)
