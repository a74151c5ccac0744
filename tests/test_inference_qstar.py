"""The per-point optimised Gaussian q* (npvae.inference.qstar) against closed forms on
pPCA, and the ordering ELBO(q) <= ELBO(q*) <= AIS, IWAE(k) <= AIS on a trained nonlinear
model (digits)."""

import numpy as np
import pytest

from npvae.inference.ais import ais
from npvae.inference.metrics import elbo_terms, iwae_log_likelihood
from npvae.inference.qstar import optimise_qstar
from tests.inference_models import PPCA


def test_qstar_is_the_exact_posterior_when_that_is_diagonal():
    """W with orthogonal rows: the posterior is a diagonal Gaussian, so q* must equal it;
    the (random) encoder starts far from it."""
    p = PPCA(z=3, d=6, variance=0.3, seed=1, orthogonal=True)
    x = p.data(20)
    q = optimise_qstar(p.model, x, rng=0)
    sd = np.sqrt(np.diag(p.post_cov))
    assert np.all(np.abs(q.mu - p.post_mean(x)) < 0.02 * sd)
    np.testing.assert_allclose(np.exp(q.logvar) / np.diag(p.post_cov), 1.0, atol=0.05)
    assert q.converged.all() and np.all(q.steps < 3000)
    mu0, lv0 = p.model.encode(x)
    assert np.abs(lv0 - np.log(np.diag(p.post_cov))).max() > 1  # it had to travel
    # ELBO(q*) = log p(x) when q* is the posterior, up to the n_eval samples' error
    assert abs((q.elbo - p.log_px(x)).mean()) < 0.1


def test_qstar_of_a_correlated_gaussian_posterior_is_the_mean_field_optimum():
    """For a Gaussian posterior N(m, S), the diagonal Gaussian maximising the ELBO (minimising
    KL(q || p)) has mean m and variances 1 / diag(S^-1)."""
    p = PPCA(z=2, d=4, variance=0.3, seed=2, w=[[1.0, 1.0, 0.5, 0.0], [1.0, 0.6, 0.8, 0.3]])
    x = p.data(10)
    prec = np.linalg.inv(p.post_cov)
    assert abs(prec[0, 1]) > 0.3 * np.sqrt(prec[0, 0] * prec[1, 1])  # really correlated
    q = optimise_qstar(p.model, x, rng=1)
    sd = np.sqrt(np.diag(p.post_cov))
    # noisier than the diagonal case: the path-derivative gradient is exactly 0 only at
    # an exact fit, so q* ends where Adam's last, smallest steps jitter
    assert np.all(np.abs(q.mu - p.post_mean(x)) < 0.1 * sd)
    np.testing.assert_allclose(np.exp(q.logvar) * np.diag(prec), 1.0, atol=0.05)
    # the gap log p(x) - ELBO(q*) is KL(q* || p), in closed form
    var = 1 / np.diag(prec)
    kl = 0.5 * (np.sum(var * np.diag(prec)) - 2 + np.log(np.linalg.det(p.post_cov))
                - np.log(var).sum())
    gap = (p.log_px(x) - q.elbo).mean()
    assert abs(gap - kl) < 0.1 and kl > 0.1, (gap, kl)


@pytest.fixture(scope="module")
def digits_model():
    from npvae import VAE
    from npvae.datasets import load_dataset

    ds = load_dataset("digits", progress=False)
    vae = VAE(64, 3, hidden=(48,), seed=0)
    vae.fit(ds.x_train, epochs=15, batch_size=64, lr=3e-3, progress=False, seed=0)
    return vae, ds.x_test[:16]


def test_bounds_are_ordered_on_a_trained_model(digits_model):
    """ELBO(q) <= ELBO(q*) <= AIS and IWAE(k) <= AIS, each within a few standard errors
    (MC errors measured here from independent repeats)."""
    vae, x = digits_model
    elbo = [-np.add(*elbo_terms(vae, x, n_samples=500, rng=s)) for s in (0, 1)]
    q = optimise_qstar(vae, x, rng=0, n_eval=500)
    iwae = iwae_log_likelihood(vae, x, k=200, rng=0)
    a = ais(vae, x, n_steps=300, chains=8, rng=0)
    m_q, m_star, m_iwae = elbo[0].mean(), q.elbo.mean(), iwae.mean()
    m_ais, se_ais = a.mean()
    se_elbo = np.abs(elbo[0] - elbo[1]).mean() / np.sqrt(2 * len(x))
    assert m_q < m_star + 3 * se_elbo
    assert m_star < m_ais + 3 * (se_ais + se_elbo)
    assert m_iwae < m_ais + 3 * se_ais
    assert m_star - m_q > 0.05  # an amortisation gap to measure
    assert np.all(q.elbo > elbo[0] - 0.5)  # and no point got worse


def test_qstar_errors_and_seed(digits_model):
    vae, x = digits_model
    a = optimise_qstar(vae, x[:2], rng=3, max_steps=60, n_eval=5)
    b = optimise_qstar(vae, x[:2], rng=3, max_steps=60, n_eval=5)
    np.testing.assert_array_equal(a.mu, b.mu)
    assert np.all(a.steps == 60) and not a.converged.any()
    with pytest.raises(ValueError, match="lr must be a positive"):
        optimise_qstar(vae, x, lr=0)
    with pytest.raises(ValueError, match="pass both mu and logvar"):
        elbo_terms(vae, x, mu=np.zeros((16, 3)))
    with pytest.raises(ValueError, match=r"mu and logvar must have shape \(16, 3\)"):
        elbo_terms(vae, x, mu=np.zeros((2, 3)), logvar=np.zeros((2, 3)))
