"""The reparameterised sample and the closed-form KL: gradient checks over drawn shapes,
and the statistical checks a gradient check cannot replace (a variance/std mix-up has
self-consistent gradients; only the sample moments expose it)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npvae.core.gradcheck import check_vjp, numerical_vjp, rel_error
from npvae.kernels import get_kernels
from tests.strategies import batch, seeds, width

K = get_kernels()
TOL = 1e-6


def forward(h, noise):
    z = h.shape[1] // 2
    out = np.empty((noise.shape[0], z))
    kl = np.empty(z)
    K.sample_kl(h, noise, out, kl)
    return out, kl


@given(n=batch, z=width, reps=st.integers(1, 3), seed=seeds)
def test_sample_and_kl_gradients(n, z, reps, seed):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, 2 * z)) * 1.5
    noise = rng.standard_normal((reps * n, z))
    w = rng.random(z) * 2

    def f(h_):
        # the scalar-valued pair [z, w.kl] as one vector, so one check covers both paths
        out, kl = forward(h_, noise)
        return np.concatenate([out.ravel(), [w @ kl]])

    def vjp(u):
        dz = u[:-1].reshape(reps * n, z)
        dh = np.empty_like(h)
        K.sample_kl_backward(h, noise, dz, w * u[-1], dh)
        return dh

    assert check_vjp(f, vjp, h, rng) <= TOL
    u = rng.standard_normal(reps * n * z + 1)
    assert rel_error(vjp(u), numerical_vjp(f, h.copy(), u)) <= TOL


def test_kl_fixed_points():
    out, kl = forward(np.zeros((4, 6)), np.zeros((4, 3)))
    assert np.all(kl == 0) and np.all(out == 0)
    # one dimension, mu = 1, logvar = 0: KL = mu^2 / 2
    _, kl = forward(np.array([[1.0, 0.0]]), np.zeros((1, 1)))
    assert kl[0] == pytest.approx(0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_moments_match_mu_and_exp_logvar(dtype):
    rng = np.random.default_rng(0)
    mu = np.array([[-2.0, 0.0, 3.0]])
    logvar = np.array([[np.log(0.25), 0.0, np.log(4.0)]])
    h = np.hstack([mu, logvar]).astype(dtype)
    reps = 200_000
    noise = rng.standard_normal((reps, 3)).astype(dtype)
    z = np.empty((reps, 3), dtype)
    K.sample_kl(h, noise, z, np.empty(3, dtype))
    se_mean = np.sqrt(np.exp(logvar[0]) / reps)
    assert np.all(np.abs(z.mean(0) - mu[0]) < 5 * se_mean)
    var = z.astype(np.float64).var(0)
    # the variance of a sample variance of a normal is 2 s^4 / (n - 1)
    se_var = np.sqrt(2 / reps) * np.exp(logvar[0])
    assert np.all(np.abs(var - np.exp(logvar[0])) < 5 * se_var)


def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mu = np.array([0.7, -1.2, 0.1, 2.0])
    logvar = np.array([-1.0, 0.5, 0.0, -2.5])
    h = np.hstack([mu, logvar])[None, :]
    reps = 400_000
    noise = rng.standard_normal((reps, 4))
    z = np.empty((reps, 4))
    kl = np.empty(4)
    K.sample_kl(h, noise, z, kl)
    # E_q[log q(z) - log p(z)], per dimension
    log_q = -0.5 * (np.log(2 * np.pi) + logvar + (z - mu) ** 2 / np.exp(logvar))
    log_p = -0.5 * (np.log(2 * np.pi) + z**2)
    mc = (log_q - log_p).mean(0)
    se = (log_q - log_p).std(0) / np.sqrt(reps)
    assert np.all(np.abs(mc - kl) < 5 * se)
