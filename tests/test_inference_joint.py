"""log p(x, z) and its gradient in z (npvae.inference.joint): central differences over
Hypothesis-drawn decoders (depth, activation, likelihood, conditioning, batch 1 and one
chain included), closed forms on linear decoders, the annealing path's parts."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npvae.core.gradcheck import numerical_vjp, rel_error
from npvae.core.model import VAEModel
from npvae.inference.joint import LOG_2PI, DiagonalGaussian, LogJoint, Path
from tests.cases import LIKELIHOOD_NAMES, SMOOTH_NAMES

TOL = 1e-6


def data_for(lik, rng, n, d):
    return rng.random((n, d)) if lik == "bernoulli" else rng.standard_normal((n, d))


def pre_activations(model, z, y, chains):
    inp = z if y is None else np.hstack([z, np.tile(y, (chains, 1))])
    pre = []
    for layer in model.decoder.layers:
        pre.append(inp @ layer.W + layer.b)
        inp = layer.act.forward(pre[-1])
    return pre[:-1]


@given(dec=st.lists(st.integers(1, 4), max_size=2), d=st.integers(1, 5), z=st.integers(1, 3),
       n=st.integers(1, 4), chains=st.integers(1, 3), lik=st.sampled_from(LIKELIHOOD_NAMES),
       act=st.sampled_from(SMOOTH_NAMES + ["relu", "leaky_relu"]), cond=st.integers(0, 2),
       seed=st.integers(0, 2**31))
def test_gradient_of_log_joint_matches_central_differences(dec, d, z, n, chains, lik, act,
                                                           cond, seed):
    model = VAEModel(d, z, hidden=(), decoder_hidden=dec, activation=act, likelihood=lik,
                     variance=0.7, cond_dim=cond, dtype="float64", seed=seed % 1000)
    rng = np.random.default_rng(seed)
    model.params.data[...] += 0.3 * rng.standard_normal(model.params.size)
    x = data_for(lik, rng, n, d)
    y = rng.standard_normal((n, cond)) if cond else None
    joint = LogJoint(model, x, y, chains)
    zs = rng.standard_normal((chains * n, z))
    if act in ("relu", "leaky_relu", "elu"):
        assume(all(np.min(np.abs(a)) > 1e-3 for a in pre_activations(model, zs, y, chains)))
    grad = np.empty_like(zs)
    joint(zs, grad)
    u = rng.standard_normal(chains * n)
    numeric = numerical_vjp(lambda z_: joint(z_).copy(), zs.copy(), u)
    assert rel_error(u[:, None] * grad, numeric) <= TOL
    # the likelihood part alone, and a second call gives the same (buffers reused)
    g2 = np.empty_like(zs)
    ll = joint.log_likelihood(zs, g2).copy()
    np.testing.assert_allclose(grad, g2 - zs, rtol=1e-12, atol=1e-12)
    lp = joint(zs)
    np.testing.assert_allclose(lp, ll - 0.5 * (zs ** 2).sum(1) - 0.5 * z * LOG_2PI, rtol=1e-12)


def ppca(z=2, d=5, variance=0.3, seed=0, dtype="float64", **kw):
    model = VAEModel(d, z, hidden=(), likelihood="gaussian", variance=variance, dtype=dtype,
                     seed=seed, **kw)
    rng = np.random.default_rng(seed)
    model.decoder.layers[0].b[...] = rng.standard_normal(d)
    return model, rng


def test_linear_gaussian_log_joint_is_the_closed_form():
    model, rng = ppca()
    W, b = model.decoder.layers[0].W, model.decoder.layers[0].b
    x = rng.standard_normal((3, 5))
    zs = rng.standard_normal((2 * 3, 2))
    grad = np.empty_like(zs)
    lp = LogJoint(model, x, chains=2)(zs, grad)
    xt = np.tile(x, (2, 1))
    r = xt - zs @ W - b
    want = (-0.5 * (r ** 2).sum(1) / 0.3 - 0.5 * 5 * np.log(2 * np.pi * 0.3)
            - 0.5 * (zs ** 2).sum(1) - LOG_2PI)
    np.testing.assert_allclose(lp, want, rtol=1e-12)
    np.testing.assert_allclose(grad, r @ W.T / 0.3 - zs, rtol=1e-12)


def test_linear_bernoulli_conditional_log_joint_is_the_closed_form():
    model = VAEModel(4, 2, hidden=(), cond_dim=3, dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    W, b = model.decoder.layers[0].W, model.decoder.layers[0].b
    b[...] = rng.standard_normal(4)
    x, y = rng.random((2, 4)), rng.standard_normal((2, 3))
    zs = rng.standard_normal((3 * 2, 2))
    grad = np.empty_like(zs)
    lp = LogJoint(model, x, y, chains=3)(zs, grad)
    logits = np.hstack([zs, np.tile(y, (3, 1))]) @ W + b
    xt = np.tile(x, (3, 1))
    want = (xt * logits - np.logaddexp(0, logits)).sum(1) - 0.5 * (zs ** 2).sum(1) - LOG_2PI
    np.testing.assert_allclose(lp, want, rtol=1e-12)
    np.testing.assert_allclose(grad, (xt - 1 / (1 + np.exp(-logits))) @ W[:2].T - zs,
                               rtol=1e-12)


@pytest.mark.parametrize("prior_base", [True, False])
@given(beta=st.floats(0, 1), seed=st.integers(0, 2**31), n=st.integers(1, 3),
       chains=st.integers(1, 3))
def test_path_parts_and_their_gradients(prior_base, beta, seed, n, chains):
    model = VAEModel(4, 3, hidden=(5,), activation="tanh", dtype="float64", seed=seed % 100)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4))
    joint = LogJoint(model, x, chains=chains)
    mu, lv = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    base = None if prior_base else DiagonalGaussian(mu, lv, np.float64)
    path = Path(joint, base)
    p = path.new_point()
    p.z[...] = rng.standard_normal(p.z.shape)
    path.evaluate(p)
    # the parts: log f_1 = log p(x, z), log f_0 = log p0
    np.testing.assert_allclose(p.lb + p.lr, LogJoint(model, x, chains=chains)(p.z),
                               rtol=1e-12, atol=1e-12)
    if not prior_base:
        m, s2 = np.tile(mu, (chains, 1)), np.tile(np.exp(lv), (chains, 1))
        want = -0.5 * ((p.z - m) ** 2 / s2 + np.log(2 * np.pi * s2)).sum(1)
        np.testing.assert_allclose(p.lb, want, rtol=1e-12)

    def f(z_):
        q = path.new_point(grad=False)
        q.z[...] = z_
        path.evaluate(q)
        return q.logp(beta, np.empty(len(z_)))

    u = rng.standard_normal(path.rows)
    g = p.grad(beta, np.empty_like(p.z))
    assert rel_error(u[:, None] * g, numerical_vjp(f, p.z.copy(), u)) <= TOL


def test_backends_agree_in_float32():
    pytest.importorskip("numba")
    out = []
    for backend in ("numba", "numpy"):
        model = VAEModel(12, 3, hidden=(8,), dtype="float32", seed=4, backend=backend)
        rng = np.random.default_rng(0)
        joint = LogJoint(model, rng.random((5, 12)), chains=4)
        zs = rng.standard_normal((20, 3)).astype(np.float32)
        g = np.empty_like(zs)
        out.append((joint(zs, g).copy(), g))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-5)


def test_errors_name_the_problem():
    model, rng = ppca()
    joint = LogJoint(model, rng.standard_normal((3, 5)), chains=2)
    with pytest.raises(ValueError, match=r"z must be a \(6, 2\) array of float64"):
        joint(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="z must be"):
        joint(np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match="GiB of decoder workspace"):
        LogJoint(model, rng.standard_normal((1000, 5)), chains=10**7)
    with pytest.raises(TypeError, match="chains must be an integer"):
        LogJoint(model, rng.standard_normal((3, 5)), chains=1.5)
