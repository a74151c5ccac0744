"""The classifier q(y|x): log-softmax against scipy, the backward of the cross-entropy, the
entropy and the expectation against central differences (Hypothesis, float64, batch 1
included), and the stand-alone ClassifierModel's gradient, every parameter entry."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import log_softmax as scipy_log_softmax

from npvae.core.classifier import (
    ClassifierModel,
    check_labels,
    cross_entropy_grad,
    entropy_grad,
    expectation_grad,
    log_softmax,
)
from npvae.core.gradcheck import numerical_vjp, rel_error
from tests.strategies import batch, seeds

TOL = 1e-8
classes = st.integers(2, 6)


def logits_for(seed, n, k, scale=3.0):
    return np.random.default_rng(seed).standard_normal((n, k)) * scale


@given(n=batch, k=classes, seed=seeds, scale=st.sampled_from([1.0, 30.0, 1e3]))
def test_log_softmax_is_scipys_and_stable(n, k, seed, scale):
    s = logits_for(seed, n, k, scale)
    got = log_softmax(s)
    np.testing.assert_allclose(got, scipy_log_softmax(s, axis=1), rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0, rtol=1e-12)


@given(n=batch, k=classes, seed=seeds)
def test_cross_entropy_gradient(n, k, seed):
    s = logits_for(seed, n, k)
    labels = np.random.default_rng(seed + 1).integers(0, k, n)
    ce, d = cross_entropy_grad(log_softmax(s), labels)
    np.testing.assert_allclose(ce, -scipy_log_softmax(s, axis=1)[np.arange(n), labels],
                               rtol=1e-12)
    u = np.random.default_rng(seed + 2).standard_normal(n)  # a weight per row
    num = numerical_vjp(lambda t: cross_entropy_grad(log_softmax(t), labels)[0], s.copy(), u)
    assert rel_error(u[:, None] * d, num) < TOL


@given(n=batch, k=classes, seed=seeds)
def test_entropy_gradient_and_range(n, k, seed):
    s = logits_for(seed, n, k)
    h, dh = entropy_grad(log_softmax(s))
    q = np.exp(scipy_log_softmax(s, axis=1))
    np.testing.assert_allclose(h, -(q * np.log(q)).sum(axis=1), rtol=1e-10, atol=1e-300)
    assert np.all(h >= -1e-12) and np.all(h <= np.log(k) + 1e-12)
    u = np.random.default_rng(seed + 2).standard_normal(n)
    num = numerical_vjp(lambda t: entropy_grad(log_softmax(t))[0], s.copy(), u)
    assert rel_error(u[:, None] * dh, num) < TOL


def test_entropy_extremes():
    h, _ = entropy_grad(log_softmax(np.zeros((1, 5))))
    assert h[0] == pytest.approx(np.log(5), rel=1e-14)  # uniform: log K
    h, dh = entropy_grad(log_softmax(np.array([[800.0, 0.0, -800.0]])))
    assert h[0] == 0 and np.all(np.isfinite(dh))  # certain: 0, never NaN from 0 * log 0


@given(n=batch, k=classes, seed=seeds)
def test_expectation_gradient(n, k, seed):
    s = logits_for(seed, n, k)
    e = np.random.default_rng(seed + 3).standard_normal((n, k)) * 10
    f, df = expectation_grad(log_softmax(s), e)
    np.testing.assert_allclose(f, (np.exp(scipy_log_softmax(s, axis=1)) * e).sum(1), rtol=1e-12)
    u = np.random.default_rng(seed + 2).standard_normal(n)
    num = numerical_vjp(lambda t: expectation_grad(log_softmax(t), e)[0], s.copy(), u)
    assert rel_error(u[:, None] * df, num) < TOL


@given(hidden=st.lists(st.integers(1, 4), max_size=2), d=st.integers(1, 4), k=classes,
       n=batch, l2=st.sampled_from([0.0, 0.3]), act=st.sampled_from(["tanh", "softplus"]),
       seed=seeds)
def test_classifier_model_gradient_every_entry(hidden, d, k, n, l2, act, seed):
    model = ClassifierModel(d, k, hidden, activation=act, l2=l2, dtype="float64",
                            seed=seed % 1000)
    rng = np.random.default_rng(seed)
    model.params.data[...] += 0.3 * rng.standard_normal(model.params.size)
    x = rng.standard_normal((n, d))
    labels = rng.integers(0, k, n)
    w = rng.random(n)
    model.loss_and_grad(x, labels, w)
    analytic = model.params.grad.copy()

    def loss(p):
        model.params.data[...] = p
        return model.loss_and_grad(x, labels, w)[0]

    p0 = model.params.data.copy()
    num = numerical_vjp(loss, p0.copy(), 1.0)
    model.params.data[...] = p0
    assert rel_error(analytic, num) < 1e-7


def test_classifier_model_scores_accuracy_and_proba():
    model = ClassifierModel(3, 4, (5,), dtype="float64")
    x = np.random.default_rng(0).standard_normal((7, 3))
    p = model.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    y = p.argmax(1)
    assert model.score(x, y) == 1.0 and model.score(x, (y + 1) % 4) == 0.0


@pytest.mark.parametrize("bad, match", [
    (np.array([0, 1, 5]), r"class in \[0, 3\); found 5 at row 2"),
    (np.array([0, -2, 1]), "found -2 at row 1"),
    (np.array([0.5, 1, 1]), "integer class labels"),
    (np.array([0, 1]), r"shape \(3,\)"),
])
def test_check_labels_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        check_labels(bad, 3, 3)


def test_check_labels_accepts_minus_one_only_when_asked():
    np.testing.assert_array_equal(check_labels([0, -1, 2.0], 3, 3), [0, -1, 2])
    with pytest.raises(ValueError, match="class in"):
        check_labels([0, -1, 2], 3, 3, unlabelled=False)
