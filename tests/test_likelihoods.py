"""Every likelihood: gradient with respect to the decoder output and to its own learned
parameters, its per-row NLL against the fused kernel, its stability and its support."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npvae.core.gradcheck import check_vjp, rel_error
from npvae.core.likelihoods import Bernoulli, GaussianFixed, get_likelihood
from npvae.core.params import ParamBuffer
from npvae.kernels import get_kernels
from tests.cases import LIKELIHOOD_CASES
from tests.strategies import batch, seeds, width

TOL = 1e-6
CASES = [lik for cases in LIKELIHOOD_CASES.values() for lik in cases]
K = get_kernels()


def bound(lik, d, dtype=np.float64, seed=0):
    params = ParamBuffer(lik.param_shapes(d), dtype)
    lik.bind(params)
    lik.initialize()
    if params.size:  # move a learned variance off its initial value
        params.data[...] += np.random.default_rng(seed).standard_normal(params.size) * 0.3
    return params


def data(lik, rng, n, d):
    if isinstance(lik, Bernoulli):
        return rng.random((n, d))
    return rng.standard_normal((n, d))


@pytest.mark.parametrize("lik", CASES, ids=repr)
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds, scale=st.sampled_from([1.0, 0.3]))
def test_gradient_wrt_output_and_parameters(lik, n, d, reps, seed, scale):
    rng = np.random.default_rng(seed)
    params = bound(lik, d, seed=seed)
    x = data(lik, rng, n, d)
    out = rng.standard_normal((reps * n, d)) * 3

    def total(out_):
        return np.array([lik.nll_and_grad(out_, x, scale, np.empty_like(out_), K) * scale])

    def vjp(u):
        dout = np.empty_like(out)
        lik.nll_and_grad(out, x, scale, dout, K)
        return dout * u[0]

    assert check_vjp(total, vjp, out, rng) <= TOL
    if params.size:
        theta = params.data.copy()

        def total_theta(t):
            params.data[...] = t
            return total(out)

        def vjp_theta(u):
            params.data[...] = theta
            lik.nll_and_grad(out, x, scale, np.empty_like(out), K)
            return params.grad * u[0]

        assert check_vjp(total_theta, vjp_theta, theta.copy(), rng) <= TOL
        params.data[...] = theta


@pytest.mark.parametrize("lik", CASES, ids=repr)
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds)
def test_per_row_nll_matches_fused_total(lik, n, d, reps, seed):
    rng = np.random.default_rng(seed)
    bound(lik, d, seed=seed)
    x = data(lik, rng, n, d)
    out = rng.standard_normal((reps * n, d))
    rows = lik.nll(out, x)
    assert rows.shape == (reps * n,)
    total = lik.nll_and_grad(out, x, 1.0, np.empty_like(out), K)
    assert rel_error(rows.sum(), total) < 1e-12


def test_bernoulli_at_zero_logit_is_log_2_per_pixel():
    lik = Bernoulli()
    x = np.array([[0.0, 1.0, 0.5]])
    out = np.zeros((1, 3))
    assert lik.nll_and_grad(out, x, 1.0, np.empty_like(out), K) == pytest.approx(3 * np.log(2))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bernoulli_is_stable_for_huge_logits_in_float32(backend):
    k = get_kernels(backend)
    logits = np.array([[1e4, -1e4, 1e4, -1e4, 88.0, -104.0]], np.float32)
    x = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]], np.float32)
    g = np.empty_like(logits)
    total = k.bernoulli_nll(logits, x, 1.0, g)
    assert np.isfinite(total) and np.all(np.isfinite(g))
    assert total == pytest.approx(2e4, rel=1e-6)  # the two wrong-side pixels cost |l| each
    np.testing.assert_allclose(g[0], [0, 0, 1, -1, 0, 0], atol=1e-6)
    rows = Bernoulli().nll(logits, x)
    assert np.all(np.isfinite(rows))


def test_gaussian_fixed_unit_variance_is_half_squared_error():
    lik = GaussianFixed(1.0)
    bound(lik, 2)
    x = np.array([[1.0, 2.0]])
    out = np.array([[0.0, 0.0]])
    want = 0.5 * (1 + 4) + np.log(2 * np.pi)  # two dims, each 0.5 log 2pi
    assert lik.nll_and_grad(out, x, 1.0, np.empty_like(out), K) == pytest.approx(want)


def test_support_and_names():
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        Bernoulli().validate(np.array([[0.5, 255.0]]))
    with pytest.raises(ValueError, match="unknown likelihood"):
        get_likelihood("poisson")
    with pytest.raises(ValueError, match="variance must be a positive"):
        GaussianFixed(0.0)
    for name in ["bernoulli", "gaussian", "gaussian-scalar", "gaussian-diag"]:
        assert get_likelihood(name).name == name


@pytest.mark.parametrize("lik", CASES, ids=repr)
def test_mean_and_sample(lik, rng):
    bound(lik, 3)
    out = rng.standard_normal((1000, 3))
    mean = lik.mean(out)
    s = lik.sample(out, rng)
    assert s.shape == out.shape and mean.shape == out.shape
    if isinstance(lik, Bernoulli):
        assert set(np.unique(s)) <= {0.0, 1.0} and np.all((mean > 0) & (mean < 1))
