r"""The MCMC transitions over z of :mod:`npvae.inference.samplers`: random-walk Metropolis
(:class:`RandomWalk`) and HMC (:class:`HMC`, MALA with one leapfrog step), each one
Metropolis-Hastings step of every chain's row at once, its buffers allocated once."""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk

__all__ = ["RandomWalk", "HMC"]


class _Kernel:
    def __init__(self, path, scale, grad):
        self.path = path
        r, z, dt = path.rows, path.joint.latent_dim, path.joint.dtype
        self.k = path.joint.kernels
        self.prop = path.new_point(grad)
        self.scale = np.ones((1, z), dt) if scale is None else np.ascontiguousarray(scale, dt)
        self.noise = np.empty((r, z), dt)
        self.u = np.empty(r)
        n = path.joint.n
        self.full, self.half = np.empty((n, z), dt), np.empty((n, z), dt)  # eps * s
        h = (r * z + 1) // 2  # Box-Muller's buffers: u1, angles, radii, both in z's dtype
        ang = np.empty(2 * h, np.float32)
        self._bm = (np.empty(h), ang, np.empty(h),
                    ang if dt == np.float32 else np.empty(2 * h, dt), np.empty(h, dt))
        self.f0, self.f1, self.prob = np.empty(r), np.empty(r), np.empty(r)
        self.need_prob = True
        self.ok, self.bad, self.accept = (np.empty(r, bool) for _ in range(3))

    def _steps(self, step_size):
        """Each point's step per dimension, epsilon_n s_nj, into ``full`` (and half of it
        into ``half``): what the leapfrog kernels read, row r at point r % N."""
        np.multiply(step_size[:, None], self.scale, out=self.full)
        np.multiply(self.full, 0.5, out=self.half)
        return self.full

    def _normal(self, rng, out):
        r"""Standard normal draws into ``out``, by Box-Muller from ``rng``'s uniforms:
        :math:`\sqrt{-2 \log u_1}\,(\cos, \sin)(2\pi u_2)` with :math:`u_1` uniform on
        (0, 1] in float64 (the tails reach 8.5 sd) and the angle in float32 (NumPy's float32
        sin and cos are SIMD loops, its float64 ones are not: 18 against 1.3 us for 2,400
        values). NumPy's ``standard_normal`` took 40-55 us for 4,800 values here, a tenth of
        an HMC transition on the pPCA benchmark; this about half of that."""
        u, ang, rad, ang_o, rad_o = self._bm
        h = (out.size + 1) // 2
        r, a, c = rad[:h], ang[:h], ang[h:2 * h]
        rng.random(out=u[:h])
        np.subtract(1.0, u[:h], out=r)  # (0, 1]: log never sees 0
        np.log(r, out=r)
        np.multiply(r, -2.0, out=r)
        np.sqrt(r, out=r)
        rng.random(out=a, dtype=np.float32)
        np.multiply(a, np.float32(2 * np.pi), out=a)
        np.sin(a, out=c)
        np.cos(a, out=a)
        if ang_o is not ang:  # the products in one dtype: a mixed one buffers 64 kB
            np.copyto(ang_o, ang)
        np.copyto(rad_o, rad)
        flat, n = out.reshape(-1), out.size - h
        np.multiply(ang_o[:h], rad_o[:h], out=flat[:h])
        np.multiply(ang_o[h:h + n], rad_o[:n], out=flat[h:])
        return out

    def _finish(self, state, rng, log_ratio):
        """Accept where log_ratio is finite and log u < log_ratio; return the acceptance
        probabilities min(1, e^log_ratio) (0 where not finite), or, with ``need_prob``
        False (an AIS run, which adapts nothing), the accept flags.

        A finite log_ratio means a finite proposal: it holds log f(z') = lb + beta lr
        (NaN or inf if either part, or z' itself, is: ``0 * inf`` is NaN too) and, for HMC,
        the final momentum, into which the last half-step put the proposal's gradient."""
        np.isfinite(log_ratio, out=self.ok)
        rng.random(out=self.u)
        np.log(self.u, out=self.u)
        np.less(self.u, log_ratio, out=self.accept)
        self.accept &= self.ok  # +inf too: only a finite ratio is a finite proposal
        state.take(self.prop, self.accept)
        if not self.need_prob:
            return self.accept
        np.logical_not(self.ok, out=self.bad)
        np.minimum(log_ratio, 0.0, out=self.prob)
        np.exp(self.prob, out=self.prob)
        np.copyto(self.prob, 0.0, where=self.bad)
        return self.prob


class RandomWalk(_Kernel):
    r"""Random-walk Metropolis: :math:`z' = z + \epsilon\, s \odot \xi`, :math:`\xi \sim N(0,I)`.
    """

    evaluations_per_step = 1

    def __init__(self, path, scale=None):
        super().__init__(path, scale, grad=False)

    def step(self, state, step_size, beta, rng):
        """One transition of every row at inverse temperature ``beta``; returns the rows'
        acceptance probabilities (R,). ``step_size`` is (N,), one per data point."""
        self._normal(rng, self.noise)
        self.prop.z[...] = state.z
        self.k.leapfrog_drift(self.prop.z, self.noise, self._steps(step_size))
        self.path.evaluate(self.prop)
        state.logp(beta, self.f0)
        self.prop.logp(beta, self.f1)
        self.f1 -= self.f0
        return self._finish(state, rng, self.f1)


class HMC(_Kernel):
    r"""Hamiltonian Monte Carlo with ``n_leapfrog`` leapfrog steps (unit mass in the
    coordinates :math:`z / s`); ``n_leapfrog=1`` is MALA.

    Leapfrog, with :math:`g = \nabla \log f`:
    :math:`v \leftarrow v + \tfrac\epsilon2 s g`, then L times
    :math:`z \leftarrow z + \epsilon s v`, evaluate, :math:`v \leftarrow v + \epsilon s g`
    (:math:`\tfrac\epsilon2` on the last); kernels ``leapfrog_kick_drift`` (a kick and
    the drift after it, in one pass) and ``leapfrog_kick``. The gradient at the kept state
    is carried over, so a step costs L decoder passes forward and backward.
    """

    def __init__(self, path, n_leapfrog=10, scale=None, jitter=0.0):
        super().__init__(path, scale, grad=True)
        self.n_leapfrog = chk.positive_int(n_leapfrog, "n_leapfrog")
        self.jitter = float(jitter)
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.jittered = None
        self.evaluations_per_step = self.n_leapfrog
        self.v = self.noise
        self.zero_mu = np.zeros((1, self.v.shape[1]), self.v.dtype)
        self.one_iv = np.ones_like(self.zero_mu)
        self.no_const = np.zeros(1)
        self.gv = np.empty_like(self.v)

    def _kinetic(self, out):
        """out = -|v|^2 / 2 per row."""
        self.k.normal_log_density(self.v, self.zero_mu, self.one_iv, self.no_const, out,
                                  self.gv)

    def step(self, state, step_size, beta, rng):
        r"""One HMC transition of every row; returns the acceptance probabilities (R,).

        With ``jitter`` j > 0 each point's step is drawn from
        :math:`\epsilon\,U(1 - j, 1 + j)` for the transition (Neal 2011, 5.4.2.2): a fixed
        trajectory length can be a whole period of the dynamics, so that every trajectory
        returns near its start, and the jitter breaks that. The draw depends on nothing but
        ``rng``, so the transition still leaves the target invariant."""
        v, prop, k = self.v, self.prop, self.k
        if self.jittered is None or self.jittered.shape != step_size.shape:
            self.jittered = np.empty_like(step_size)
        if self.jitter:
            j = self.jittered
            rng.random(out=j, dtype=j.dtype)  # U(1 - jitter, 1 + jitter) times the step
            j *= 2 * self.jitter
            j += 1 - self.jitter
            j *= step_size
            step_size = self.jittered
        full, half = self._steps(step_size), self.half
        self._normal(rng, v)
        h0, h1 = self.f0, self.f1
        self._kinetic(h0)
        h0 += state.logp(beta, h1)  # -H(z, v) = log f - |v|^2 / 2
        prop.z[...] = state.z
        k.leapfrog_kick_drift(prop.z, v, state.g_lb, state.g_lr, beta, half, full)
        for i in range(self.n_leapfrog):
            last = i == self.n_leapfrog - 1
            self.path.evaluate(prop, values=last)
            if last:
                k.leapfrog_kick(v, prop.g_lb, prop.g_lr, beta, half)
            else:
                k.leapfrog_kick_drift(prop.z, v, prop.g_lb, prop.g_lr, beta, full, full)
        self._kinetic(h1)
        h1 += prop.logp(beta, self.u)
        h1 -= h0  # log acceptance ratio H - H'
        return self._finish(state, rng, h1)
