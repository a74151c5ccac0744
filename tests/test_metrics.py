"""npvae.inference.metrics against exact answers: a linear-Gaussian VAE whose log p(x) and posterior
are known in closed form, plus active units and the KL per dimension."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import npvae.inference.metrics as metrics
from npvae.inference.metrics import active_units, elbo_terms, iwae_log_likelihood, kl_per_dimension
from npvae.training.estimator import VAE

D, Z = 5, 2


def linear_gaussian(seed=0):
    """x = z W + b + e, z ~ N(0, I), e ~ N(0, I), with orthogonal rows in W so that the exact
    posterior is diagonal; the encoder is set to that posterior. Returns model, data, and
    the exact log p(x) of every row."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    s = np.array([2.0, 0.7])
    w = s[:, None] * q[:Z]  # (Z, D)
    b = rng.standard_normal(D)
    sigma = 1.0 / (1.0 + s ** 2)  # posterior variance: (I + W W^T)^-1
    m = VAE(input_dim=D, latent_dim=Z, hidden=(), likelihood="gaussian", dtype="float64")
    p = m.named_parameters()
    p["decoder.out.W"][...] = w
    p["decoder.out.b"][...] = b
    p["encoder.out.W"][...] = 0.0
    p["encoder.out.W"][:, :Z] = w.T * sigma
    p["encoder.out.b"][:Z] = -(b @ w.T) * sigma
    p["encoder.out.b"][Z:] = np.log(sigma)
    x = rng.standard_normal((200, Z)) @ w + b + rng.standard_normal((200, D))
    exact = multivariate_normal(b, w.T @ w + np.eye(D)).logpdf(x)
    return m, x, exact


def test_iwae_is_exact_with_the_true_posterior():
    m, x, exact = linear_gaussian()
    # with q = p(z|x) every importance weight equals p(x): any k gives log p(x)
    for k in (1, 3):
        np.testing.assert_allclose(iwae_log_likelihood(m, x, k=k, rng=0), exact, rtol=0,
                                   atol=1e-9)
    gap = m.elbo(x, n_samples=50, rng=1) - exact  # E[ELBO] = log p(x) when q is exact
    assert abs(gap.mean()) < 4 * gap.std() / np.sqrt(len(gap))


def test_iwae_tightens_with_k_and_bounds_log_likelihood():
    m, x, exact = linear_gaussian()
    p = m.named_parameters()
    p["encoder.out.b"][Z:] += 0.7  # a worse, too wide posterior
    p["encoder.out.b"][:Z] += 0.3
    elbo = np.mean([m.elbo(x, rng=s).mean() for s in range(20)])
    ll10 = iwae_log_likelihood(m, x, k=10, rng=0).mean()
    ll1000 = iwae_log_likelihood(m, x, k=1000, rng=0).mean()
    assert elbo < ll10 < ll1000 <= exact.mean() + 0.01
    assert ll1000 == pytest.approx(exact.mean(), abs=0.02)


def test_iwae_chunking_does_not_change_the_result(monkeypatch):
    m, x, _ = linear_gaussian()
    p = m.named_parameters()
    p["encoder.out.b"][Z:] += 0.5
    ref = iwae_log_likelihood(m, x, k=7, rng=3)
    monkeypatch.setattr(metrics, "_MAX_ELEMENTS", 2 * len(x) * D)  # chunks of 2 samples
    np.testing.assert_allclose(iwae_log_likelihood(m, x, k=7, rng=3), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="k must be >= 1"):
        iwae_log_likelihood(m, x, k=0)


def test_kl_per_dimension_matches_closed_form():
    m, x, _ = linear_gaussian()
    mu, lv = m.encode(x)
    kl = kl_per_dimension(m, x)
    expected = 0.5 * (mu ** 2 + np.exp(lv) - lv - 1).mean(axis=0)
    np.testing.assert_allclose(kl, expected, rtol=1e-12)
    assert kl.shape == (Z,) and np.all(kl >= 0)
    _, kl_rows = elbo_terms(m, x, rng=0)
    assert kl_rows.mean() == pytest.approx(kl.sum(), rel=1e-12)


def test_active_units_trained_vs_untrained():
    rng = np.random.default_rng(0)
    protos = (rng.random((4, 16)) < 0.5).astype(np.float64)
    x = np.abs(protos[rng.integers(0, 4, 300)] - (rng.random((300, 16)) < 0.05))
    untrained = VAE(input_dim=16, latent_dim=8, hidden=(32,), dtype="float64")
    n0, var0 = active_units(untrained, x)
    assert n0 == 8  # a random encoder moves every mean
    np.testing.assert_allclose(var0, untrained.encode(x)[0].var(axis=0))
    trained = VAE(latent_dim=8, hidden=(32,), dtype="float64").fit(
        x, epochs=200, batch_size=32, lr=3e-3, lr_schedule=None, progress=False)
    n1, var1 = active_units(trained, x)
    # 4 prototypes need about 2 dimensions; the rest collapse to the prior
    assert 2 <= n1 <= 5
    kl = kl_per_dimension(trained, x)
    assert np.all(kl[var1 <= 0.01] < 0.05) and np.all(kl[np.argsort(var1)[-2:]] > 0.3)
    assert active_units(trained, x, threshold=0.0)[0] == 8
