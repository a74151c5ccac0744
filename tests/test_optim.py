"""Optimizers: one step from a preset state against the update written out here, the
textbook form of Adam, state save/restore, clipping, and edge-size buffers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npvae.core.optim import SGD, Adam, global_norm
from npvae.core.params import ParamBuffer
from tests.strategies import seeds


def buffer(values, dtype=np.float64):
    p = ParamBuffer({"w": (len(values),)}, dtype)
    p.data[...] = values
    return p


@given(size=st.integers(0, 30), seed=seeds, steps=st.integers(1, 7),
       wd=st.sampled_from([0.0, 0.05]))
def test_adam_matches_pytorch_form_written_out(size, seed, steps, wd):
    rng = np.random.default_rng(seed)
    p = buffer(rng.standard_normal(size))
    opt = Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    theta, m, v = p.data.copy(), np.zeros(size), np.zeros(size)
    for t in range(1, steps + 1):
        g = rng.standard_normal(size)
        p.grad[...] = g
        opt.step()
        theta = theta * (1 - 0.01 * wd)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        theta = theta - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-6)
    np.testing.assert_allclose(p.data, theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt.m, m, rtol=1e-12, atol=1e-14)
    assert opt.t == steps


def test_adam_equals_kingma_ba_efficient_form():
    """Kingma & Ba, section 2: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) and
    theta -= lr_t m / (sqrt(v) + eps_hat) with eps_hat = eps sqrt(1 - b2^t) is the same update."""
    rng = np.random.default_rng(0)
    p = buffer(rng.standard_normal(50))
    opt = Adam(p, lr=1e-3)
    theta, m, v = p.data.copy(), np.zeros(50), np.zeros(50)
    for t in range(1, 11):
        g = rng.standard_normal(50)
        p.grad[...] = g
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        theta = theta - lr_t * m / (np.sqrt(v) + 1e-8 * np.sqrt(1 - 0.999**t))
    np.testing.assert_allclose(p.data, theta, rtol=1e-12)


@given(seed=seeds, momentum=st.sampled_from([0.0, 0.5, 0.9]), nesterov=st.booleans(),
       wd=st.sampled_from([0.0, 0.1]))
def test_sgd_matches_update_written_out(seed, momentum, nesterov, wd):
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    p = buffer(rng.standard_normal(7))
    opt = SGD(p, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    theta, b = p.data.copy(), None
    for _ in range(5):
        g = rng.standard_normal(7)
        p.grad[...] = g
        opt.step()
        d = g + wd * theta
        if momentum:
            b = d if b is None else momentum * b + d
            d = d + momentum * b if nesterov else b
        theta = theta - 0.1 * d
    np.testing.assert_allclose(p.data, theta, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.01, weight_decay=0.01),
                                  lambda p: SGD(p, lr=0.01, momentum=0.9, nesterov=True)])
def test_state_dict_resumes_exactly(make):
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((6, 20)).astype(np.float32)
    a = buffer(rng.standard_normal(20), np.float32)
    b = buffer(a.data.copy(), np.float32)
    opt_a = make(a)
    for g in grads:
        a.grad[...] = g
        opt_a.step()
    opt_b = make(b)
    for g in grads[:3]:
        b.grad[...] = g
        opt_b.step()
    state = opt_b.state_dict()
    opt_c = make(b)
    opt_c.load_state_dict(state)
    for g in grads[3:]:
        b.grad[...] = g
        opt_c.step()
    assert np.array_equal(a.data, b.data)


def test_clipping_scales_the_gradient_to_the_norm():
    p = buffer(np.zeros(4))
    p.grad[...] = [3.0, 4.0, 0.0, 0.0]  # norm 5
    opt = SGD(p, lr=1.0, clip_norm=1.0)
    opt.step()
    assert opt.last_grad_norm == pytest.approx(5.0)
    np.testing.assert_allclose(p.data, [-0.6, -0.8, 0, 0], rtol=1e-6)
    assert global_norm(p.grad) == pytest.approx(5.0)  # the gradient itself is untouched


def test_non_finite_gradient_is_refused_before_the_update():
    p = buffer(np.ones(3))
    p.grad[...] = [1.0, np.nan, 0.0]
    opt = Adam(p, clip_norm=10.0)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        opt.step()
    assert np.all(p.data == 1.0)


def test_hyper_parameter_errors():
    p = buffer(np.ones(2))
    with pytest.raises(ValueError, match="lr must be"):
        Adam(p, lr=-1)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="momentum"):
        SGD(p, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(p, nesterov=True)
    with pytest.raises(ValueError, match="expected"):
        Adam(p).load_state_dict({"m": np.zeros(3), "v": np.zeros(3), "t": 1})


@pytest.mark.parametrize("n", [1, 3, 8, 9])
@pytest.mark.parametrize("cond", [0, 2])
def test_fused_train_step_equals_loss_and_grad_then_step(n, cond):
    """train_step fuses x.T @ delta into Adam for small batches: same parameters."""
    from npvae.core.model import VAEModel

    kw = dict(hidden=(200,), cond_dim=cond, dtype="float64", seed=4, n_samples=1)
    a, b = VAEModel(300, 4, **kw), VAEModel(300, 4, **kw)
    oa, ob = Adam(a.params, lr=1e-2, weight_decay=0.1), Adam(b.params, lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(n)
    for _ in range(4):
        x = rng.random((n, 300))
        y = rng.random((n, cond)) if cond else None
        noise = rng.standard_normal((1, n, 4))
        la, _ = a.train_step(x, oa, y, noise=noise)
        lb, _ = b.loss_and_grad(x, y, noise=noise)
        ob.step()
        assert la == pytest.approx(lb, rel=1e-13)
    np.testing.assert_allclose(a.params.data, b.params.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(oa.v, ob.v, rtol=1e-10, atol=1e-20)


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_train_step_fuses_from_the_workspace_at_batch_1(act):
    """At batch 1 the large weight blocks' gradients are never written (their factors go
    from the step's workspace to Adam); the smaller blocks' are."""
    from npvae.core.model import VAEModel

    m = VAEModel(300, 4, hidden=(200,), activation=act, dtype="float64", seed=1)
    opt = Adam(m.params, lr=1e-2)
    m.params.grad[...] = np.nan
    m.train_step(np.random.default_rng(0).random((1, 300)), opt)
    grads = m.named_gradients()
    big = [name for name, g in grads.items() if g.size >= 1 << 15]
    assert big == ["encoder.0.W", "decoder.out.W"]
    assert all(np.isnan(grads[name]).all() for name in big)
    assert all(np.isfinite(g).all() for name, g in grads.items() if name not in big)
    assert np.isfinite(m.params.data).all()
    assert not any(hasattr(layer, "deferred") for layer in m.encoder.layers + m.decoder.layers)


def test_train_step_with_sgd_is_loss_and_grad_then_step():
    from npvae.core.model import VAEModel

    a, b = (VAEModel(30, 3, hidden=(8,), dtype="float64", seed=2) for _ in range(2))
    oa, ob = SGD(a.params, lr=0.1, momentum=0.9), SGD(b.params, lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for n in (1, 5):
        x, noise = rng.random((n, 30)), rng.standard_normal((1, n, 3))
        a.train_step(x, oa, noise=noise)
        b.loss_and_grad(x, noise=noise)
        ob.step()
    np.testing.assert_array_equal(a.params.data, b.params.data)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_train_step_refuses_a_non_finite_loss_before_updating():
    from npvae.core.model import VAEModel

    m = VAEModel(4, 2, hidden=(3,), likelihood="gaussian", dtype="float64")
    opt = Adam(m.params)
    m.params.data[0] = np.inf
    before = m.params.data.copy()
    with pytest.raises(FloatingPointError, match="no update was made"):
        m.train_step(np.ones((2, 4)), opt)
    np.testing.assert_array_equal(m.params.data, before)
    p = buffer(np.ones(3))
    with pytest.raises(ValueError, match="cannot be clipped"):
        Adam(p, clip_norm=1.0).step(deferred={"w": (np.ones((1, 1)), np.ones((1, 3)))})
