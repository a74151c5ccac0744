"""The per-row likelihood kernels (``bernoulli_nll_rows``, ``gaussian_nll_rows``): numba
against the reference, the reference against the summed kernels and the likelihoods' own
per-row ``nll``, and the row-weighted gradient against central differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npvae.core.gradcheck import numerical_vjp, rel_error
from npvae.core.likelihoods import Bernoulli, GaussianDiagonal, GaussianScalar
from npvae.kernels import get_kernels
from tests.strategies import batch, seeds, width

pytest.importorskip("numba")
NB, REF = get_kernels("numba"), get_kernels("numpy")
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-12}


def close(a, b, dtype, n_terms=1):
    rtol = RTOL[dtype] * max(1, n_terms)
    atol = rtol * max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def draws(dtype, n, d, reps, seed, big=1.0):
    rng = np.random.default_rng(seed)
    out = (rng.standard_normal((reps * n, d)) * big).astype(dtype)
    return rng, out, rng.standard_normal(reps * n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=batch, d=st.sampled_from([1, 3, 6, 513]), reps=st.integers(1, 3), seed=seeds,
       big=st.sampled_from([1.0, 30.0, 1e4]))
def test_bernoulli_rows_match_reference_and_the_summed_kernel(dtype, n, d, reps, seed, big):
    rng, logits, s = draws(dtype, n, d, reps, seed, big)
    x = rng.random((n, d)).astype(dtype)
    g = [np.full_like(logits, np.nan) for _ in range(3)]
    nll = [np.full(len(logits), np.nan) for _ in range(2)]
    NB.bernoulli_nll_rows(logits, x, s, g[0], nll[0])
    REF.bernoulli_nll_rows(logits, x, s, g[1], nll[1])
    close(g[0], g[1], dtype)
    close(nll[0], nll[1], dtype, n_terms=d)
    # equal weights give the summed kernel's gradient and total
    total = REF.bernoulli_nll(logits, x, 0.5, g[2])
    REF.bernoulli_nll_rows(logits, x, np.full(len(logits), 0.5, dtype), g[1], nll[1])
    np.testing.assert_array_equal(g[1], g[2])
    close(nll[1].sum(), total, dtype, n_terms=logits.size)
    # and the likelihood's readable per-row NLL, in float64
    ref = Bernoulli().nll(logits.astype(np.float64), x.astype(np.float64))
    close(nll[1], ref, dtype, n_terms=d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared", [True, False])
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds)
def test_gaussian_rows_match_reference_and_the_summed_kernel(dtype, shared, n, d, reps, seed):
    rng, mean, s = draws(dtype, n, d, reps, seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    logvar = rng.standard_normal(1 if shared else d).astype(dtype)
    g = [np.full_like(mean, np.nan) for _ in range(3)]
    gv = [np.full_like(logvar, np.nan) for _ in range(3)]
    nll = [np.full(len(mean), np.nan) for _ in range(2)]
    NB.gaussian_nll_rows(mean, x, logvar, s, g[0], gv[0], nll[0])
    REF.gaussian_nll_rows(mean, x, logvar, s, g[1], gv[1], nll[1])
    close(g[0], g[1], dtype)
    close(gv[0], gv[1], dtype, n_terms=mean.size)
    close(nll[0], nll[1], dtype, n_terms=d)
    total = REF.gaussian_nll(mean, x, logvar, 0.25, g[2], gv[2])
    REF.gaussian_nll_rows(mean, x, logvar, np.full(len(mean), 0.25, dtype), g[1], gv[1], nll[1])
    close(g[1], g[2], dtype)
    close(gv[1], gv[2], dtype, n_terms=mean.size)
    close(nll[1].sum(), total, dtype, n_terms=mean.size)


LIKELIHOODS = [Bernoulli(), GaussianScalar(0.7), GaussianDiagonal(1.3)]


@pytest.mark.parametrize("lik", LIKELIHOODS, ids=lambda lk: lk.name)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds)
def test_row_weighted_gradient_matches_finite_differences(lik, backend, n, d, reps, seed):
    """d/d(out) of sum_r s_r nll_r is what the kernel writes (float64, central differences)."""
    from npvae.core.params import ParamBuffer

    kern = get_kernels(backend)
    rng, out, s = (a.astype(np.float64) if isinstance(a, np.ndarray) else a
                   for a in draws(np.float64, n, d, reps, seed))
    x = rng.random((n, d)) if lik.name == "bernoulli" else rng.standard_normal((n, d))
    params = ParamBuffer(lik.param_shapes(d), np.float64)
    lik.bind(params)
    lik.initialize()
    dout, nll = np.empty_like(out), np.empty(len(out))

    def f(o):
        lik.nll_rows_and_grad(o, x, s, np.empty_like(o), nll, kern)
        return np.array([s @ nll])

    lik.nll_rows_and_grad(out, x, s, dout, nll, kern)
    num = numerical_vjp(f, out, np.ones(1))
    assert rel_error(dout, num) < 1e-6
