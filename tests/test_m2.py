"""The M2 bound: its gradient against central differences (every parameter entry, every
likelihood, batch 1, labelled, unlabelled and mixed batches), the enumeration against an
explicit loop of single-class passes, and a labelled-only batch against a conditional VAE
plus a classifier computed apart."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.special import log_softmax

from npvae.core.classifier import ClassifierModel
from npvae.core.gradcheck import check_model
from npvae.core.m2 import M2Model
from npvae.core.model import VAEModel
from tests.cases import LIKELIHOOD_NAMES
from tests.test_model_grad import data_for

TOL = 1e-6


def perturbed(model, rng):
    model.params.data[...] += 0.3 * rng.standard_normal(model.params.size)
    return model


@given(
    enc=st.lists(st.integers(1, 3), max_size=1), dec=st.lists(st.integers(1, 3), max_size=1),
    cls=st.lists(st.integers(1, 3), max_size=1), d=st.integers(1, 3), z=st.integers(1, 2),
    k=st.integers(2, 3), n_lab=st.integers(0, 2), n_unl=st.integers(0, 2),
    L=st.integers(1, 2), alpha=st.sampled_from([0.0, 0.5, 3.0]),
    lik=st.sampled_from(LIKELIHOOD_NAMES), act=st.sampled_from(["tanh", "softplus", "sigmoid"]),
    weighted=st.booleans(), seed=st.integers(0, 2**31),
)
@example(enc=[2], dec=[2], cls=[2], d=3, z=2, k=3, n_lab=0, n_unl=1, L=1, alpha=0.5,
         lik="bernoulli", act="tanh", weighted=False, seed=1)  # one unlabelled row
@example(enc=[], dec=[], cls=[], d=2, z=1, k=2, n_lab=1, n_unl=0, L=2, alpha=3.0,
         lik="gaussian-diag", act="softplus", weighted=True, seed=2)  # one labelled row
@example(enc=[2], dec=[3], cls=[3, 2], d=3, z=2, k=3, n_lab=2, n_unl=2, L=2, alpha=0.5,
         lik="gaussian-scalar", act="sigmoid", weighted=True, seed=3)  # mixed
def test_m2_gradient_every_entry(enc, dec, cls, d, z, k, n_lab, n_unl, L, alpha, lik, act,
                                 weighted, seed):
    n = n_lab + n_unl
    if n == 0:  # batch 1 either way
        n_lab, n = 1, 1
    model = M2Model(k, d, z, encoder_hidden=enc, decoder_hidden=dec, classifier_hidden=cls,
                    activation=act, likelihood=lik, variance=0.7, n_samples=L,
                    dtype="float64", seed=seed % 1000)
    rng = np.random.default_rng(seed)
    perturbed(model, rng)
    x = data_for(lik, rng, n, d)
    y = np.concatenate([rng.integers(0, k, n_lab), -np.ones(n - n_lab, int)])
    rng.shuffle(y)
    noise = rng.standard_normal((L, n_lab + k * (n - n_lab), z))
    w = rng.random(n) if weighted else None
    errors = check_model(model, x, y, noise, alpha=alpha, sample_weight=w)
    assert set(errors) == set(model.params.shapes)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, (worst, errors[worst])


def test_m2_gradient_wider_model_sampled():
    """Digits-sized data, 6 entries of every block, a mixed batch."""
    model = M2Model(10, 64, 5, hidden=(16,), activation="softplus", n_samples=2,
                    dtype="float64", seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((6, 64))
    y = np.array([3, -1, -1, 7, -1, 0])
    noise = rng.standard_normal((2, 3 + 10 * 3, 5))
    errors = check_model(model, x, y, noise, per_block=6, rng=rng, alpha=2.0)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("lik", LIKELIHOOD_NAMES)
def test_enumeration_equals_a_loop_of_single_class_passes(lik):
    """One batched pass over the K copies == K passes with every row labelled k.

    Pass k (alpha 0, weights q(k|x_n)/N) gives -ELBO(x_n, k) per row and, summed over k,
    the encoder/decoder/likelihood gradient; the classifier's gradient follows from
    d/ds_j sum_k q_k (E_k + log q_k) = q_j (E_j + log q_j - U)."""
    k, n, z, L = 3, 4, 2, 2
    model = perturbed(M2Model(k, 5, z, hidden=(6,), likelihood=lik, n_samples=L,
                              dtype="float64", seed=4), np.random.default_rng(1))
    rng = np.random.default_rng(2)
    x = data_for(lik, rng, n, 5)
    noise = rng.standard_normal((L, k * n, z))  # class-major: rows k*n .. (k+1)*n - 1
    loss, parts = model.loss_and_grad(x, -np.ones(n, int), noise=noise)
    grad = model.params.grad.copy()

    logq = log_softmax(model.classifier.forward(x, model.classifier.workspace(n, np.float64)),
                       axis=1)
    q = np.exp(logq)
    e = np.empty((n, k))
    loop = np.zeros_like(grad)
    for c in range(k):
        lab = np.full(n, c)
        model.loss_and_grad(x, lab, alpha=0.0, noise=noise[:, c * n:(c + 1) * n],
                            sample_weight=q[:, c] / n)
        loop += model.params.grad
        for i in range(n):  # -ELBO(x_i, c) alone: a batch of one row, weight 1
            e[i, c] = model.loss_and_grad(x[i:i + 1], lab[:1], alpha=0.0,
                                          noise=noise[:, c * n + i:c * n + i + 1])[0]
    u = (q * (e + logq)).sum(axis=1)
    assert loss == pytest.approx(u.mean(), rel=1e-12)
    assert parts["entropy"] == pytest.approx(-(q * logq).sum(1).mean(), rel=1e-12)
    names = model.params.block_slices()
    for name, sl in names.items():
        if not name.startswith("classifier"):
            np.testing.assert_allclose(grad[sl], loop[sl], rtol=1e-10, atol=1e-12,
                                       err_msg=name)
    # the classifier: backpropagate the softmax formula through a stand-alone copy
    dlogits = q * (e + logq - u[:, None]) / n
    cws = model.classifier.workspace(n, np.float64)
    model.classifier.forward(x, cws)
    model.classifier.backward(dlogits.copy(), x, cws)
    for name, sl in names.items():
        if name.startswith("classifier"):
            np.testing.assert_allclose(grad[sl], model.params.grad[sl], rtol=1e-10,
                                       atol=1e-12, err_msg=name)


@pytest.mark.parametrize("lik", LIKELIHOOD_NAMES)
def test_labelled_batch_is_a_conditional_vae_plus_a_classifier(lik):
    """All rows labelled: loss = CVAE(cond_dim=K) loss + log K + alpha * CE, and the
    gradients are the CVAE's and alpha times the stand-alone classifier's."""
    k, n, d, z, alpha = 3, 5, 4, 2, 0.7
    m2 = perturbed(M2Model(k, d, z, hidden=(6,), classifier_hidden=(5,), activation="tanh",
                           likelihood=lik, variance=0.6, n_samples=2, dtype="float64",
                           seed=0),
                   np.random.default_rng(0))
    vae = VAEModel(d, z, hidden=(6,), activation="tanh", likelihood=lik, variance=0.6,
                   n_samples=2, cond_dim=k, dtype="float64", seed=1)
    clf = ClassifierModel(d, k, (5,), activation="tanh", dtype="float64")
    vae_names = set(vae.params.shapes)
    assert vae_names <= set(m2.params.shapes)
    vae.params.load({nm: m2.params.view(nm) for nm in vae.params.shapes})
    clf.params.load({nm: m2.params.view(nm) for nm in clf.params.shapes})
    rng = np.random.default_rng(3)
    x = data_for(lik, rng, n, d)
    y = rng.integers(0, k, n)
    noise = rng.standard_normal((2, n, z))
    loss, parts = m2.loss_and_grad(x, y, alpha=alpha, noise=noise)
    yv = np.eye(k)[y]
    vloss, vparts = vae.loss_and_grad(x, yv, noise=noise)
    closs, _ = clf.loss_and_grad(x, y)
    assert loss == pytest.approx(vloss + np.log(k) + alpha * closs, rel=1e-12)
    assert parts["ce"] == pytest.approx(closs, rel=1e-12)
    assert parts["recon"] == pytest.approx(vparts["recon"], rel=1e-12)
    assert parts["kl"] == pytest.approx(vparts["kl"], rel=1e-12)
    for name in vae_names:
        np.testing.assert_allclose(m2.params.grad_view(name), vae.params.grad_view(name),
                                   rtol=1e-11, atol=1e-13, err_msg=name)
    for name in clf.params.shapes:
        np.testing.assert_allclose(m2.params.grad_view(name),
                                   alpha * clf.params.grad_view(name), rtol=1e-11,
                                   atol=1e-13, err_msg=name)


def test_noise_reproduces_and_float32_runs():
    model = M2Model(3, 6, 2, hidden=(5,), seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((4, 6)).astype(np.float32)
    y = np.array([0, -1, 2, -1])
    noise = rng.standard_normal((1, 2 + 3 * 2, 2)).astype(np.float32)
    a, _ = model.loss_and_grad(x, y, noise=noise)
    g = model.params.grad.copy()
    b, _ = model.loss_and_grad(x, y, noise=noise)
    assert a == b and np.array_equal(g, model.params.grad) and np.isfinite(a)


def test_bad_input_is_named():
    model = M2Model(3, 4, 2, hidden=(5,))
    x = np.random.default_rng(0).random((3, 4))
    with pytest.raises(ValueError, match=r"class in \[0, 3\)"):
        model.loss_and_grad(x, [0, 3, -1])
    with pytest.raises(ValueError, match=r"noise must have shape \(L, N_l \+ K N_u, Z\)"):
        model.loss_and_grad(x, [0, 1, -1], noise=np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="sample_weight"):
        model.loss_and_grad(x, [0, 1, -1], sample_weight=np.ones(2))
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        M2Model(1, 4)
