"""Every Numba kernel against its plain-NumPy reference, in float32 and float64.

Elementwise outputs must agree to a few ulps; reductions (bias gradients, totals) to the
rounding of a sum of that length. The numba backend is loaded explicitly, so these run
(and must pass) under NPVAE_BACKEND=numpy too.
"""

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from npvae.kernels import KERNEL_NAMES, _reference, get_kernels
from npvae.kernels.activations import BY_CODE
from tests.cases import ACTIVATIONS
from tests.strategies import arrays, batch, seeds, width

pytest.importorskip("numba")
NB = get_kernels("numba")
REF = get_kernels("numpy")
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-12}


def close(a, b, dtype, n_terms=1):
    """Elementwise agreement, loosened for reductions in proportion to their length."""
    rtol = RTOL[dtype] * max(1, n_terms)
    atol = rtol * max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_both_backends_expose_every_kernel():
    assert NB.name == "numba" and REF.name == "numpy"
    for name in KERNEL_NAMES:
        assert callable(getattr(NB, name)) and callable(getattr(_reference, name))


@pytest.mark.parametrize("dtype", DTYPES)
@given(m=batch, k=st.integers(1, 300), n=st.integers(1, 300), t_a=st.booleans(),
       t_b=st.booleans(), seed=seeds)
def test_matmul(dtype, m, k, n, t_a, t_b, seed):
    """A dense layer's three products (``x @ W``, ``x.T @ dy``, ``dy @ W.T``): operands C
    ordered or transposed views. GEMMs that sum in different orders (MKL and NumPy's BLAS)
    agree to the dot-product bound ``2 K eps (|A| @ |B|)``; tests/test_gemm.py has more."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if t_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if t_b else (k, n)).astype(dtype)
    a, b = (a.T if t_a else a), (b.T if t_b else b)
    out = [np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)]
    assert NB.matmul(a, b, out[0]) is out[0]
    assert REF.matmul(a, b, out[1]) is out[1]
    bound = 2 * k * np.finfo(dtype).eps * (np.abs(a).astype(np.float64) @ np.abs(b))
    assert np.all(np.abs(out[0].astype(np.float64) - out[1]) <= 2 * bound)
    assert np.all(np.abs(out[1] - a.astype(np.float64) @ b) <= bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)  # every registered activation's cases
@given(shape=st.tuples(batch, width), seed=seeds)
def test_bias_act_and_backward(dtype, act, shape, seed):
    code, param = act.code, act.param
    rng = np.random.default_rng(seed)
    y0 = (rng.standard_normal(shape) * 4).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    ya, yb = y0.copy(), y0.copy()
    NB.bias_act(ya, b, code, param)
    REF.bias_act(yb, b, code, param)
    close(ya, yb, dtype)
    pa, pb = np.full_like(y0, np.nan), np.full_like(y0, np.nan)  # any activation can keep a
    yc, yd = y0.copy(), y0.copy()
    NB.bias_act_pre(yc, b, code, param, pa)
    REF.bias_act_pre(yd, b, code, param, pb)
    np.testing.assert_array_equal(pa, y0 + b)
    np.testing.assert_array_equal(pb, y0 + b)
    close(yc, yb, dtype)
    close(yd, yb, dtype)
    t = act.saved(pb, yb)  # what a layer keeps for the backward: y, or a if needs_pre
    dy = rng.standard_normal(shape).astype(dtype)
    da, dbuf = dy.copy(), dy.copy()
    dba, dbb = np.empty_like(b), np.empty_like(b)
    NB.act_backward(da, t, code, param, dba)
    REF.act_backward(dbuf, t, code, param, dbb)
    close(da, dbuf, dtype)
    close(dba, dbb, dtype, n_terms=shape[0])


@pytest.mark.parametrize("kernels", [NB, REF], ids=["numba", "numpy"])
def test_unknown_activation_code_raises(kernels):
    """No silent fallback: a code no activation has is an error in both backends."""
    code = max(BY_CODE) + 1
    y, b = np.ones((2, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="unknown activation code"):
        kernels.bias_act(y, b, code, 0.0)
    with pytest.raises(ValueError, match="unknown activation code"):
        kernels.act_backward(y.copy(), y, code, 0.0, b.copy())


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=batch, z=width, reps=st.integers(1, 3), seed=seeds)
def test_sample_kl_and_backward(dtype, n, z, reps, seed):
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal((n, 2 * z)) * 2).astype(dtype)
    noise = rng.standard_normal((reps * n, z)).astype(dtype)
    out = [np.empty((reps * n, z), dtype), np.empty((reps * n, z), dtype)]
    kl = [np.empty(z, dtype), np.empty(z, dtype)]
    NB.sample_kl(h, noise, out[0], kl[0])
    REF.sample_kl(h, noise, out[1], kl[1])
    close(out[0], out[1], dtype)
    close(kl[0], kl[1], dtype, n_terms=n)
    dz = rng.standard_normal((reps * n, z)).astype(dtype)
    w = rng.random(z).astype(dtype)
    dh = [np.empty_like(h), np.empty_like(h)]
    NB.sample_kl_backward(h, noise, dz, w, dh[0])
    REF.sample_kl_backward(h, noise, dz, w, dh[1])
    close(dh[0], dh[1], dtype, n_terms=reps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 300])
def test_kernels_without_numpys_exp_loop(dtype, n, monkeypatch):
    """Where NumPy offers no exp loop the kernels take Numba's scalar exp: they must still
    agree with the reference, small and large (prange) alike."""
    from npvae.kernels import _numba, _numba_iwae, _numba_kl, _numba_likelihood
    from npvae.plumbing.ufunc_loop import NO_LOOP

    if _numba._exp_loop(dtype) == NO_LOOP:  # NPVAE_PLUMBING=0: every test above is the fallback
        pytest.skip("NumPy's exp loop is off (npvae.plumbing.capabilities())")
    for module in (_numba_kl, _numba_iwae, _numba_likelihood):  # where the kernels read it
        monkeypatch.setattr(module, "_exp_loop", lambda dtype: NO_LOOP)
    test_sample_kl_and_backward.hypothesis.inner_test(dtype, n, 20, 2, 7)
    test_bernoulli_nll.hypothesis.inner_test(dtype, n, 784, 1, 7, 30.0)
    test_sigmoid.hypothesis.inner_test(dtype, n, 784, 7, 30.0)


def test_sample_kl_writes_into_a_strided_view():
    """The conditional VAE writes z into the first columns of the decoder input."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 4))
    noise = rng.standard_normal((3, 2))
    buf = np.full((3, 5), 7.0)
    NB.sample_kl(h, noise, buf[:, :2], np.empty(2))
    ref = np.empty((3, 2))
    REF.sample_kl(h, noise, ref, np.empty(2))
    np.testing.assert_allclose(buf[:, :2], ref, rtol=1e-12)
    assert np.all(buf[:, 2:] == 7.0)


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds,
       big=st.sampled_from([1.0, 30.0, 1e4]))
def test_bernoulli_nll(dtype, n, d, reps, seed, big):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((reps * n, d)) * big).astype(dtype)
    x = rng.random((n, d)).astype(dtype)
    g = [np.empty_like(logits), np.empty_like(logits)]
    ta = NB.bernoulli_nll(logits, x, 0.5, g[0])
    tb = REF.bernoulli_nll(logits, x, 0.5, g[1])
    assert np.isfinite(ta) and np.all(np.isfinite(g[0]))
    close(g[0], g[1], dtype)
    close(ta, tb, dtype, n_terms=logits.size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [511, 512, 513, 1100])
def test_bernoulli_nll_across_log_chunks(dtype, d):
    """Rows longer than one float64 product (LOG1P_CHUNK values) give the same NLL."""
    from npvae.kernels import _numba

    assert _numba.LOG1P_CHUNK == 512
    test_bernoulli_nll.hypothesis.inner_test(dtype, 3, d, 2, 11, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=batch, d=width, seed=seeds, big=st.sampled_from([1.0, 30.0, 1e4]))
def test_sigmoid(dtype, n, d, seed, big):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, d)) * big).astype(dtype)
    a, b = np.empty_like(logits), np.empty_like(logits)
    assert NB.sigmoid(logits, a) is a
    REF.sigmoid(logits, b)
    close(a, b, dtype)
    np.testing.assert_allclose(b, scipy.special.expit(logits.astype(np.float64)),
                               rtol=5 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    assert np.all((a >= 0) & (a <= 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared", [True, False])
@given(n=batch, d=width, reps=st.integers(1, 3), seed=seeds)
def test_gaussian_nll(dtype, shared, n, d, reps, seed):
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal((reps * n, d)).astype(dtype)
    x = rng.standard_normal((n, d)).astype(dtype)
    logvar = rng.standard_normal(1 if shared else d).astype(dtype)
    g = [np.empty_like(mean), np.empty_like(mean)]
    gv = [np.empty_like(logvar), np.empty_like(logvar)]
    ta = NB.gaussian_nll(mean, x, logvar, 0.25, g[0], gv[0])
    tb = REF.gaussian_nll(mean, x, logvar, 0.25, g[1], gv[1])
    close(g[0], g[1], dtype)
    close(gv[0], gv[1], dtype, n_terms=mean.size)
    close(ta, tb, dtype, n_terms=mean.size)


@pytest.mark.parametrize("dtype", DTYPES)
@given(size=st.integers(0, 40), seed=seeds, wd=st.sampled_from([0.0, 0.01]),
       gscale=st.sampled_from([1.0, 0.3]))
def test_adam_step_over_seven_steps(dtype, size, seed, wd, gscale):
    """Seven steps, comparing parameters and both moments (PyTorch's fused-vs-loop test)."""
    rng = np.random.default_rng(seed)
    p = [rng.standard_normal(size).astype(dtype) for _ in range(2)]
    p[1][...] = p[0]
    m = [np.zeros(size, dtype) for _ in range(2)]
    v = [np.zeros(size, dtype) for _ in range(2)]
    b1, b2 = 0.9, 0.999
    for t in range(1, 8):
        g = rng.standard_normal(size).astype(dtype)
        for k, kern in enumerate((NB, REF)):
            kern.adam_step(p[k], g, m[k], v[k], 1e-2, b1, b2, 1e-8, 1 - b1**t, 1 - b2**t, wd,
                           gscale)
    close(p[0], p[1], dtype, n_terms=8)
    close(m[0], m[1], dtype, n_terms=8)
    close(v[0], v[1], dtype, n_terms=8)


@pytest.mark.parametrize("dtype", DTYPES)
@given(size=st.integers(0, 40), seed=seeds, momentum=st.sampled_from([0.0, 0.9]),
       nesterov=st.booleans(), wd=st.sampled_from([0.0, 0.01]))
def test_sgd_step(dtype, size, seed, momentum, nesterov, wd):
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    p = [rng.standard_normal(size).astype(dtype) for _ in range(2)]
    p[1][...] = p[0]
    buf = [np.zeros(size, dtype) for _ in range(2)]
    for t in range(1, 5):
        g = rng.standard_normal(size).astype(dtype)
        for k, kern in enumerate((NB, REF)):
            kern.sgd_step(p[k], g, buf[k], 0.1, momentum, wd, nesterov, t == 1, 0.5)
    close(p[0], p[1], dtype, n_terms=5)
    close(buf[0], buf[1], dtype, n_terms=5)


@pytest.mark.parametrize("dtype", DTYPES)
@given(g=st.integers(0, 50).flatmap(lambda n: arrays((n,), lo=-100, hi=100)))
def test_sum_squares(dtype, g):
    g = g.astype(dtype)
    np.testing.assert_allclose(NB.sum_squares(g), REF.sum_squares(g), rtol=1e-12)


@pytest.mark.parametrize("size", [0, 1, 7, 70_001])
def test_parallel_adam_equals_serial_bit_for_bit(size):
    from npvae.kernels import _numba

    rng = np.random.default_rng(size)
    bufs = [rng.standard_normal(size).astype(np.float32) for _ in range(4)]
    a = [b.copy() for b in bufs]
    b = [b.copy() for b in bufs]
    b[3] = np.abs(b[3])
    a[3] = b[3].copy()
    args = (1e-3, 0.9, 0.999, 1e-8, 0.2, 0.01, 0.01, 0.5)
    _numba._adam_range(*a, 0, size, *args)
    _numba._adam_parallel(*b, *args, 8)
    for u, w in zip(a, b, strict=True):
        assert np.array_equal(u, w)


@pytest.mark.parametrize("kern", [NB, REF], ids=["numba", "numpy"])
def test_subnormals_are_flushed_not_computed(kern):
    """Subnormal arithmetic is ~50x slower on x86: Adam's moments and the Bernoulli
    gradient of a saturated logit are flushed to 0 instead (a change below 1e-35)."""
    tiny = np.finfo(np.float32).tiny
    p = np.ones(4, np.float32)
    g = np.array([1e-20, 0.0, 1e-3, -1e-20], np.float32)
    m = np.array([0.0, tiny * 1.05, 0.0, 0.0], np.float32)  # decays below tiny this step
    v = np.zeros(4, np.float32)
    kern.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0, 1.0)
    assert m[0] == 0 and v[0] == 0 and m[3] == 0 and m[1] == 0
    assert m[2] != 0 and v[2] != 0
    sub = lambda a: np.any((a != 0) & (np.abs(a) < tiny))  # noqa: E731
    assert not sub(m) and not sub(v)
    logits = np.array([[-100.0, 100.0, -80.0]], np.float32)
    x = np.array([[0.0, 1.0, 0.0]], np.float32)
    dl = np.empty_like(logits)
    total = kern.bernoulli_nll(logits, x, 1.0, dl)
    assert dl[0, 0] == 0 and dl[0, 1] == 0 and dl[0, 2] > 0 and not sub(dl)
    assert total == pytest.approx(np.exp(-80.0), rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=st.integers(1, 4), n_in=st.integers(1, 9), n_out=st.integers(1, 9), seed=seeds,
       wd=st.sampled_from([0.0, 0.01]))
def test_adam_step_outer(dtype, n, n_in, n_out, seed, wd):
    """The fused update with the gradient x.T @ delta formed on the fly, serial and parallel."""
    from npvae.kernels import _numba

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    delta = rng.standard_normal((n, n_out)).astype(dtype)
    state = [rng.standard_normal((n_in, n_out)).astype(dtype), np.zeros((n_in, n_out), dtype),
             np.zeros((n_in, n_out), dtype)]
    runs = {k: [a.copy() for a in state] for k in ("ref", "nb", "par")}
    args = (1e-2, 0.9, 0.999, 1e-8, 0.1, 0.001, wd)
    REF.adam_step_outer(*runs["ref"][:1], x, delta, *runs["ref"][1:], *args)
    NB.adam_step_outer(*runs["nb"][:1], x, delta, *runs["nb"][1:], *args)
    _numba._adam_outer_parallel(*runs["par"][:1], x, delta, *runs["par"][1:], *args, 3)
    for k in ("nb", "par"):
        for a, b in zip(runs[k], runs["ref"], strict=True):
            close(a, b, dtype, n_terms=n + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(131, 513), (300, 400), (5, 20_000)])
def test_row_parallel_twins_match_reference_and_serial(dtype, shape, monkeypatch):
    """Logits of PARALLEL_MIN values and more go to the prange twins (row blocks); they
    must agree with the reference, and elementwise outputs bit for bit with the serial
    loops (the NLL is summed block by block, so only to rounding)."""
    from npvae.kernels import _numba, _numba_likelihood

    rng = np.random.default_rng(5)
    x = rng.random((shape[0] // 2 + 1, shape[1])).astype(dtype)
    logits = (rng.standard_normal((2 * x.shape[0], shape[1])) * 30).astype(dtype)
    assert logits.size >= _numba.PARALLEL_MIN and _numba._row_chunks(logits) > 1

    def run(kern):
        g = np.empty_like(logits)
        return kern.bernoulli_nll(logits, x, 0.25, g), g, kern.sigmoid(logits, g.copy())

    par, ref = run(NB), run(REF)
    monkeypatch.setattr(_numba_likelihood, "PARALLEL_MIN", 1 << 62)  # where _row_chunks reads it
    ser = run(NB)
    close(par[0], ref[0], dtype, n_terms=logits.size)
    close(par[0], ser[0], dtype, n_terms=logits.size)
    for i in (1, 2):
        close(par[i], ref[i], dtype)
        assert np.array_equal(par[i], ser[i])


def iwae_inputs(dtype, n, z, k, groups, seed, cond):
    rng = np.random.default_rng(seed)
    rows = groups * k * n
    h = (rng.standard_normal((n, 2 * z)) * 2).astype(dtype)
    noise = rng.standard_normal((rows, z)).astype(dtype)
    dec_in = rng.standard_normal((rows, z + cond)).astype(dtype)  # z: a strided view if cond
    nll = rng.standard_normal(rows) * 30 + 50
    return rng, h, noise, dec_in[:, :z], nll


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=batch, z=width, k=st.integers(1, 6), groups=st.integers(1, 2), cond=st.integers(0, 2),
       beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]), stop_q=st.booleans(), seed=seeds)
def test_iwae_weights_and_backward(dtype, n, z, k, groups, cond, beta, stop_q, seed):
    rng, h, noise, zs, nll = iwae_inputs(dtype, n, z, k, groups, seed, cond)
    rows = len(noise)
    ratio, wn = [np.full(rows, np.nan) for _ in range(2)], [np.full(rows, np.nan) for _ in range(2)]
    scale = [np.full(rows, np.nan, dtype) for _ in range(2)]
    got = [kern.iwae_weights(h, noise, zs, nll, beta, k, ratio[i], wn[i], scale[i])
           for i, kern in enumerate((NB, REF))]
    close(ratio[0], ratio[1], dtype, n_terms=z)
    close(wn[0], wn[1], dtype, n_terms=z)
    close(scale[0], scale[1], dtype, n_terms=z)
    for a, b in zip(got[0], got[1], strict=True):
        assert a == pytest.approx(b, rel=RTOL[dtype] * z * rows, abs=RTOL[dtype] * z * rows)
    dz_buf = rng.standard_normal((rows, z + cond)).astype(dtype)
    rho = rng.random(rows).astype(dtype)
    dh = [np.full_like(h, np.nan), np.full_like(h, np.nan)]
    NB.iwae_backward(h, noise, zs, dz_buf[:, :z], scale[1], rho, beta, stop_q, dh[0])
    REF.iwae_backward(h, noise, zs, dz_buf[:, :z], scale[1], rho, beta, stop_q, dh[1])
    close(dh[0], dh[1], dtype, n_terms=groups * k * 4)


def test_iwae_weights_reference_is_log_sum_exp_over_each_bound():
    """The reference against an explicit loop: per (bound, point), scipy's logsumexp and
    softmax of beta * log(N(z; 0, I) / N(z; mu, sigma^2)) - nll."""
    from scipy.stats import norm

    n, z, k, groups, beta = 3, 2, 4, 2, 0.7
    _, h, noise, _, nll = iwae_inputs(np.float64, n, z, k, groups, 5, 1)
    mu, sd = h[:, :z], np.exp(0.5 * h[:, z:])
    zs = np.tile(mu, (groups * k, 1)) + np.tile(sd, (groups * k, 1)) * noise
    ratio, wn, scale = np.empty(len(noise)), np.empty(len(noise)), np.empty(len(noise))
    bound, nll_sum, ratio_sum = REF.iwae_weights(h, noise, zs, nll, beta, k, ratio, wn, scale)
    total = 0.0
    for g in range(groups):
        for i in range(n):
            rs = [(g * k + q) * n + i for q in range(k)]
            zz = mu[i] + sd[i] * noise[rs]
            want = norm.logpdf(zz).sum(1) - norm.logpdf(zz, mu[i], sd[i]).sum(1)
            np.testing.assert_allclose(ratio[rs], want, rtol=1e-12)
            a = beta * want - nll[rs]
            np.testing.assert_allclose(wn[rs], scipy.special.softmax(a), rtol=1e-12)
            np.testing.assert_allclose(scale[rs], wn[rs] / (groups * n), rtol=1e-15)
            total += scipy.special.logsumexp(a) - np.log(k)
    assert bound == pytest.approx(total, rel=1e-12)
    assert (nll_sum, ratio_sum) == pytest.approx((nll.sum(), ratio.sum()), rel=1e-12)


# ------------------------------------------------------------------- samplers over z
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_point", [True, False])
@given(n=batch, chains=st.integers(1, 3), z=st.integers(1, 5), seed=seeds,
       beta=st.floats(0, 1))
def test_sampler_kernels(dtype, per_point, n, chains, z, seed, beta):
    """normal_log_density, leapfrog_kick, leapfrog_drift and leapfrog_kick_drift: numba
    against the reference, and the reference against an explicit loop over rows r (point
    r % N)."""
    rng = np.random.default_rng(seed)
    r, m = chains * n, n if per_point else 1
    zs, v, g1, g2 = (rng.standard_normal((r, z)).astype(dtype) for _ in range(4))
    mu = rng.standard_normal((m, z)).astype(dtype)
    iv = rng.random((m, z)).astype(dtype) + 0.1
    const = rng.standard_normal(m)
    step = (rng.random((n, z)) + 0.1).astype(dtype)
    out = [np.full(r, np.nan) for _ in range(2)]
    grad = [np.full((r, z), np.nan, dtype) for _ in range(2)]
    NB.normal_log_density(zs, mu, iv, const, out[0], grad[0])
    REF.normal_log_density(zs, mu, iv, const, out[1], grad[1])
    close(out[0], out[1], dtype, n_terms=z)
    close(grad[0], grad[1], dtype)
    kick = [v.copy(), v.copy()]
    NB.leapfrog_kick(kick[0], g1, g2, beta, step)
    REF.leapfrog_kick(kick[1], g1, g2, beta, step)
    close(kick[0], kick[1], dtype, n_terms=3)
    drift = [zs.copy(), zs.copy()]
    NB.leapfrog_drift(drift[0], v, step)
    REF.leapfrog_drift(drift[1], v, step)
    close(drift[0], drift[1], dtype, n_terms=2)
    # the fused pass equals a kick, then a drift with the kicked v (half and full steps)
    half = (0.5 * step).astype(dtype)
    fz, fv = [zs.copy(), zs.copy()], [v.copy(), v.copy()]
    NB.leapfrog_kick_drift(fz[0], fv[0], g1, g2, beta, half, step)
    REF.leapfrog_kick_drift(fz[1], fv[1], g1, g2, beta, half, step)
    sep_z, sep_v = zs.copy(), v.copy()
    NB.leapfrog_kick(sep_v, g1, g2, beta, half)
    NB.leapfrog_drift(sep_z, sep_v, step)
    np.testing.assert_array_equal(fv[0], sep_v)
    np.testing.assert_array_equal(fz[0], sep_z)
    close(fz[0], fz[1], dtype, n_terms=5)
    close(fv[0], fv[1], dtype, n_terms=3)
    zz, vv, gg1, gg2, mm, ii = (a.astype(np.float64) for a in (zs, v, g1, g2, mu, iv))
    tol = 10 * RTOL[dtype]
    for i in range(r):
        a, e = i % m, step[i % n].astype(np.float64)
        d = zz[i] - mm[a]
        np.testing.assert_allclose(out[1][i], const[a] - 0.5 * np.sum(d * d * ii[a]),
                                   rtol=tol * z, atol=tol * z)
        np.testing.assert_allclose(kick[1][i], vv[i] + e * (gg1[i] + beta * gg2[i]),
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(drift[1][i], zz[i] + e * vv[i], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(r=batch, c=width, seed=seeds)
def test_select_rows_takes_only_the_masked_rows(dtype, r, c, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(r) < 0.5
    src = rng.standard_normal((r, c)).astype(dtype)
    src[~mask] = np.nan  # what a rejected proposal may hold
    old = rng.standard_normal((r, c)).astype(dtype)
    dst = [old.copy(), old.copy()]
    NB.select_rows(dst[0], src, mask)
    REF.select_rows(dst[1], src, mask)
    np.testing.assert_array_equal(dst[0], dst[1])
    np.testing.assert_array_equal(dst[0][mask], src[mask])
    np.testing.assert_array_equal(dst[0][~mask], old[~mask])
    col = old[:, :1].copy()  # a 1-D array as a column view, as Point.take passes it
    NB.select_rows(col, src[:, :1], mask)
    assert np.all(np.isfinite(col))
