r"""Annealed importance sampling (Neal 2001) for log p(x), and its reverse for bidirectional
Monte Carlo (Grosse et al. 2015), on the decoder's :class:`~npvae.inference.joint.Path`.

With :math:`0 = \beta_0 < \beta_1 < \dots < \beta_T = 1` and
:math:`f_t(z) = p_0(z)^{1 - \beta_t}\,p(x, z)^{\beta_t}`, a chain starts at
:math:`z_0 \sim p_0`, and for t = 1..T adds to its log-weight
:math:`(\beta_t - \beta_{t-1})\,[\log p(x, z) - \log p_0(z)]` at its current z, then moves z
by one HMC transition that leaves :math:`f_t` invariant. :math:`E[w] = p(x)` exactly, so

.. math::
    \widehat{\log p(x)} = \log \frac1K \sum_k w_k

is a stochastic lower bound (Jensen) that tightens as T grows; its standard error, by the
delta method, is :math:`\mathrm{sd}(w) / (\sqrt K\, \bar w)`. The **reverse** chain starts at
an exact posterior sample (data simulated from the model: :math:`z \sim p(z)`,
:math:`x \sim p(x|z)`) and anneals from 1 to 0; its weights have :math:`E[w] = 1/p(x)`, so
:math:`-\log \frac1K \sum_k w_k` is a stochastic *upper* bound. The two bracket the true
log p(x) of simulated data, and the gap between them bounds the error of both (BDMC).

Step sizes are adapted in a **warm-up pass** only: a short annealing run of ``warmup``
temperatures on the same schedule, whose step size per data point follows the acceptance
towards ``target_accept`` and is recorded along the schedule. The real run reads that record
(interpolated in schedule position) and adapts nothing, since a step size chosen from the
run's own states would break :math:`E[w] = p(x)`. Each transition is
:class:`~npvae.inference.samplers.HMC` (``n_leapfrog`` leapfrog steps), batched over K chains
x N points in one decoder pass per leapfrog step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logsumexp

from npvae.core import checks as chk
from npvae.inference.joint import DiagonalGaussian, LogJoint, Path
from npvae.inference.samplers import HMC, STEP_MAX, STEP_MIN, _progress, _rng

__all__ = ["schedule", "AISResult", "ais", "bdmc", "simulate"]

SCHEDULES = ("sigmoid", "linear")
WARMUP_GAIN = 0.3  # log step-size change per unit of acceptance error in warm-up


def schedule(n_steps, kind="sigmoid", delta=4.0):
    r"""Inverse temperatures :math:`\beta_0 = 0 < \dots < \beta_T = 1`, shape (T + 1,).

    ``"linear"``: :math:`t / T`. ``"sigmoid"`` (Grosse et al. 2015):
    :math:`\tilde\beta_t = \sigma(\delta (2t/T - 1))`, rescaled to run from 0 to 1, which
    spends more steps near both ends, where the density changes fastest.
    """
    n_steps = chk.positive_int(n_steps, "n_steps")
    t = np.linspace(0.0, 1.0, n_steps + 1)
    if kind == "linear":
        return t
    if kind != "sigmoid":
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    s = expit(delta * (2 * t - 1))
    b = (s - s[0]) / (s[-1] - s[0])
    b[0], b[-1] = 0.0, 1.0
    return b


@dataclass
class AISResult:
    """Per-point AIS estimates.

    Attributes
    ----------
    log_px : ndarray (N,)
        The estimate of log p(x) (a lower bound for ``direction="forward"``, an upper
        bound for ``"reverse"``), in nats.
    stderr : ndarray (N,)
        Its standard error over the K chains (delta method).
    log_w : ndarray (K, N)
        Every chain's log-weight.
    accept : ndarray (N,)
        Fraction of the real run's HMC proposals accepted.
    seconds, warmup_seconds : float
        Wall time of the real run and of the warm-up pass.
    evaluations : int
        Decoder passes (forward and backward) over all R = K N rows.
    """

    direction: str
    log_px: np.ndarray
    stderr: np.ndarray
    log_w: np.ndarray
    accept: np.ndarray
    n_steps: int
    seconds: float
    warmup_seconds: float
    evaluations: int
    rows: int

    def mean(self):
        """Mean of ``log_px`` over the points and its standard error."""
        n = len(self.log_px)
        return float(self.log_px.mean()), float(np.sqrt((self.stderr ** 2).sum()) / n)


def _log_mean_exp(log_w, sign):
    """``sign * log mean exp(log_w)`` over axis 0 and its delta-method standard error."""
    k = log_w.shape[0]
    lme = logsumexp(log_w, axis=0) - np.log(k)
    w = np.exp(log_w - log_w.max(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = w.std(axis=0, ddof=1) / (np.sqrt(k) * w.mean(axis=0)) if k > 1 else \
            np.full(log_w.shape[1], np.inf)
    return sign * lme, se


class _Annealer:
    """AIS over one batch of points: the warm-up pass, then forward or reverse runs."""

    def __init__(self, model, x, y, chains, start, n_leapfrog, scale):
        self.joint = LogJoint(model, x, y, chains)
        j = self.joint
        base = None
        self.mu, self.logvar = model.encode(j.x, j.y)
        if start == "encoder":
            base = DiagonalGaussian(self.mu, self.logvar, j.dtype, j.kernels)
        elif start != "prior":
            raise ValueError(f"start must be 'prior' or 'encoder', got {start!r}")
        self.path = Path(j, base)
        s = None if scale is None else np.exp(0.5 * self.logvar.astype(np.float64))
        self.hmc = HMC(self.path, n_leapfrog, s)
        self.state = self.path.new_point()
        self.log_w = np.zeros(j.rows)
        self.accepted = np.zeros(j.rows)
        self.step = np.empty(j.n, j.dtype)
        self.tmp = np.empty(j.rows)

    def _start(self, rng, z0):
        p = self.state
        if z0 is None:
            self.path.base.sample(rng, p.z)
        else:
            p.z.reshape(self.joint.chains, self.joint.n, -1)[...] = z0
        with np.errstate(all="ignore"):
            self.path.evaluate(p)
        if not np.all(np.isfinite(p.logp(0.0, self.tmp) + p.lr)):
            raise ValueError("log p(x, z) is not finite at some starting points; check the "
                             "model and data (or start from the prior)")
        self.log_w[...] = 0.0
        self.accepted[...] = 0.0

    def warmup(self, betas, target, step0, rng, bar):
        """Anneal along ``betas`` adapting each point's step size; return log step (W, N)."""
        self._start(rng, None)
        log_eps = np.full(self.joint.n, np.log(step0))
        record = np.empty((len(betas) - 1, self.joint.n))
        k, lo, hi = self.joint.chains, np.log(STEP_MIN), np.log(STEP_MAX)
        self.hmc.need_prob = True
        with np.errstate(all="ignore"):
            self._warm(betas, target, log_eps, record, k, lo, hi, rng, bar)
        # smooth the noisy record along the schedule (a centred moving average of 5)
        pad = np.pad(record, ((2, 2), (0, 0)), mode="edge")
        return (pad[:-4] + pad[1:-3] + pad[2:-2] + pad[3:-1] + pad[4:]) / 5

    def _warm(self, betas, target, log_eps, record, k, lo, hi, rng, bar):
        pace = self.joint.kernels.pace
        for t in range(1, len(betas)):
            if pace is not None:  # as many threads as other processes leave cores free
                pace()
            self.step[...] = np.exp(log_eps)
            prob = self.hmc.step(self.state, self.step, betas[t], rng)
            a = prob.reshape(k, -1).mean(axis=0)
            np.clip(log_eps + WARMUP_GAIN * (a - target), lo, hi, out=log_eps)
            record[t - 1] = log_eps
            bar.update(1)

    def run(self, betas, log_eps, rng, bar, z0=None, reverse=False):
        """One AIS run (forward, or reverse from ``z0``) with the step sizes ``log_eps``
        recorded along the schedule; returns the chains' log-weights (R,)."""
        self._start(rng, z0)
        steps = step_table(log_eps, len(betas) - 1, self.joint.dtype)  # (T + 1, N)
        with np.errstate(all="ignore"):  # a NaN proposal is rejected, and need not warn
            self._run(betas, steps, rng, bar, reverse)
        bar.update(1)
        return self.log_w.copy()

    def _run(self, betas, steps, rng, bar, reverse):
        """The annealing loop; allocates nothing."""
        t_steps = len(betas) - 1
        order = range(t_steps, 0, -1) if reverse else range(1, t_steps + 1)
        self.hmc.need_prob = False  # no adaptation here: count acceptances, skip the exps
        pace = self.joint.kernels.pace
        for t in order:
            if pace is not None:
                pace()
            b_new = betas[t - 1] if reverse else betas[t]
            b_old = betas[t] if reverse else betas[t - 1]
            np.multiply(self.state.lr, b_new - b_old, out=self.tmp)
            self.log_w += self.tmp
            if t == (1 if reverse else t_steps):
                break  # the last transition would not change the weight
            step = steps[t - 1] if reverse else steps[t]
            acc = self.hmc.step(self.state, step, b_new, rng)  # the accept flags
            np.add(self.accepted, 1.0, out=self.accepted, where=acc)  # (a bool += buffers)
            bar.update(1)


def step_table(log_eps, n_steps, dtype):
    """Step sizes of every temperature of a run, (T + 1, N): the warm-up record (W, N)
    interpolated linearly in schedule position (temperature t of T sits at W-record
    index t (W - 1) / T)."""
    w = log_eps.shape[0]
    pos = np.linspace(0, w - 1, n_steps + 1)
    i0 = np.minimum(pos.astype(int), max(w - 2, 0))
    f = (pos - i0)[:, None] if w > 1 else np.zeros((n_steps + 1, 1))
    lo, hi = log_eps[i0], log_eps[np.minimum(i0 + 1, w - 1)]
    return np.exp((1 - f) * lo + f * hi).astype(dtype)


def _batches(n, size):
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


def ais(model, X, y=None, *, n_steps=1000, chains=16, schedule_kind="sigmoid", start="prior",
        n_leapfrog=10, target_accept=0.65, warmup=None, step_size=0.1, scale=None,
        batch_size=None, rng=None, progress=False, reverse_from=None):
    r"""Annealed importance sampling estimate of log p(x) for every row of ``X``.

    Parameters
    ----------
    model : VAEModel
    X : array_like (N, D)
    y : array_like (N, C), optional
    n_steps : int, default 1000
        T, the number of intermediate distributions (HMC transitions per chain).
    chains : int, default 16
        K, annealing chains per data point.
    schedule_kind : {"sigmoid", "linear"}
    start : {"prior", "encoder"}
        :math:`p_0`: the prior N(0, I) or the encoder's q(z|x).
    n_leapfrog : int, default 10
    target_accept : float, default 0.65
        Acceptance the warm-up pass adapts the step sizes towards.
    warmup : int, optional
        Temperatures of the warm-up pass (default ``max(20, min(200, n_steps // 10))``).
    step_size : float, default 0.1
        The warm-up pass's first step size.
    scale : None or "encoder"
        Per-dimension scale of the momentum (a diagonal mass matrix): 1, or the encoder's
        posterior sigma.
    batch_size : int, optional
        Data points annealed together (default: as many as keep K x points <= 4096 rows).
    rng : numpy.random.Generator or int, optional
    progress : bool
        tqdm progress bar.
    reverse_from : array_like (N, Z), optional
        Run the reverse chain from these exact posterior samples instead (see
        :func:`bdmc`); the estimate is then an upper bound.

    Returns
    -------
    AISResult
    """
    X, y = model.check_input(X, y, x_name="X")
    chains = chk.positive_int(chains, "chains")
    n_steps = chk.positive_int(n_steps, "n_steps")
    betas = schedule(n_steps, schedule_kind)
    if warmup is None:
        warmup = max(20, min(200, n_steps // 10))
    warmup = chk.positive_int(warmup, "warmup", minimum=2)
    target_accept = float(target_accept)
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    step_size = chk.positive_float(step_size, "step_size")
    if scale not in (None, "encoder"):
        raise ValueError(f"scale must be None or 'encoder', got {scale!r}")
    z_rev = None
    if reverse_from is not None:
        z_rev = chk.as_data(reverse_from, model.dtype, "reverse_from", dim=model.latent_dim)
        if z_rev.shape[0] != X.shape[0]:
            raise ValueError(f"reverse_from has {z_rev.shape[0]} rows but X has {X.shape[0]}")
    rng = _rng(rng)
    n = X.shape[0]
    size = batch_size or max(1, 4096 // chains)
    size = chk.positive_int(size, "batch_size")
    nb = -(-n // size)
    warm_betas = schedule(warmup, schedule_kind)
    bar = _progress(nb * (warmup + n_steps), f"AIS {n} points x {chains} chains, T={n_steps}",
                    progress)
    log_w, accept = np.empty((chains, n)), np.empty(n)
    secs = warm_secs = 0.0
    evals = 0
    for s in _batches(n, size):
        an = _Annealer(model, X[s], None if y is None else y[s], chains, start, n_leapfrog,
                       scale)
        t0 = time.perf_counter()
        log_eps = an.warmup(warm_betas, target_accept, step_size, rng, bar)
        t1 = time.perf_counter()
        w = an.run(betas, log_eps, rng, bar, None if z_rev is None else z_rev[s],
                   reverse=z_rev is not None)
        secs += time.perf_counter() - t1
        warm_secs += t1 - t0
        evals += an.joint.evaluations
        log_w[:, s] = w.reshape(chains, -1)
        accept[s] = (an.accepted / max(1, n_steps - 1)).reshape(chains, -1).mean(axis=0)
    bar.close()
    sign = -1.0 if z_rev is not None else 1.0
    est, se = _log_mean_exp(log_w, sign)
    return AISResult("reverse" if z_rev is not None else "forward", est, se, log_w, accept,
                     n_steps, secs, warm_secs, evals, chains * min(size, n))


def simulate(model, n, y=None, rng=None):
    r"""Data from the model itself: :math:`z \sim N(0, I)`, :math:`x \sim p(x|z)`.

    Returns ``(x, z)``; each z is an exact draw from the posterior :math:`p(z|x)` of its x,
    the start a reverse AIS chain needs.
    """
    rng = _rng(rng)
    n = chk.positive_int(n, "n")
    z = rng.standard_normal((n, model.latent_dim)).astype(model.dtype)
    out = model.decode(z, y, raw=True)
    return model.likelihood.sample(out, rng), z


def bdmc(model, n, *, y=None, rng=None, **ais_kw):
    """Bidirectional Monte Carlo on ``n`` data points simulated from the model.

    Runs :func:`ais` forward (a stochastic lower bound on each simulated x's log p(x)) and
    in reverse from the z that generated x (an upper bound). Returns
    ``(lower, upper, x, z)``: two :class:`AISResult` and the simulated data.
    """
    rng = _rng(rng)
    x, z = simulate(model, n, y, rng)
    lower = ais(model, x, y, rng=rng, **ais_kw)
    upper = ais(model, x, y, rng=rng, reverse_from=z, **ais_kw)
    return lower, upper, x, z
