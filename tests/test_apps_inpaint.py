"""In-painting mechanics (the trained-model check is in test_apps_trained.py)."""

import numpy as np
import pytest

from npvae import VAE
from npvae.apps import half_mask, inpaint, inpaint_report, one_hot, random_mask


@pytest.fixture(scope="module")
def model():
    return VAE(input_dim=16, latent_dim=2, hidden=(8,), seed=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stochastic", [False, True])
def test_observed_entries_never_change(model, dtype, stochastic):
    rng = np.random.default_rng(0)
    X = rng.random((20, 16)).astype(dtype)
    mask = random_mask(X.shape, 0.4, rng)
    out = inpaint(model, X, mask, n_iter=5, rng=1 if stochastic else None)
    assert out.dtype == dtype and out.shape == X.shape
    np.testing.assert_array_equal(out[~mask], X[~mask])  # bit for bit
    assert not np.allclose(out[mask], X[mask])
    # the missing entries are the decoder's output for the final image
    if not stochastic:
        prev = inpaint(model, X, mask, n_iter=4)
        rec = model.reconstruct(prev)
        np.testing.assert_allclose(out[mask], rec[mask], rtol=1e-6)


def test_zero_iterations_is_the_initial_guess(model):
    X = np.random.default_rng(1).random((3, 16))
    m = half_mask((4, 4))
    out = inpaint(model, X, m, n_iter=0, init=0.25)
    assert np.all(out[:, m] == 0.25) and np.array_equal(out[:, ~m], X[:, ~m])
    mean = np.linspace(0, 1, 16)
    out = inpaint(model, X, m, n_iter=0, init=mean)
    np.testing.assert_array_equal(out[:, m], np.tile(mean[m], (3, 1)))


def test_values_under_the_mask_are_ignored(model):
    X = np.random.default_rng(2).random((4, 16))
    m = half_mask((4, 4), "bottom")
    Y = X.copy()
    Y[:, m] = 123.0  # garbage (even outside the Bernoulli support) where missing
    np.testing.assert_array_equal(inpaint(model, X, m, n_iter=3), inpaint(model, Y, m, n_iter=3))


def test_half_masks():
    assert half_mask((2, 4)).reshape(2, 4).tolist() == [[False, False, True, True]] * 2
    assert half_mask((3, 3), "left").reshape(3, 3)[:, :2].all()
    assert half_mask((4, 2), "top").reshape(4, 2)[:2].all()
    assert half_mask((4, 2), "bottom").sum() == 4
    with pytest.raises(ValueError, match="side"):
        half_mask((4, 4), "middle")


def test_report_baseline_and_conditional():
    m = VAE(input_dim=16, latent_dim=2, hidden=(8,), cond_dim=2, seed=0)
    X = (np.random.default_rng(3).random((10, 16)) < 0.5).astype(np.float32)
    mask = half_mask((4, 4))
    mean = X.mean(0)
    r = inpaint_report(m, X, mask, mean_image=mean, y=one_hot(np.arange(10) % 2, 2), n_iter=2)
    miss = X[:, mask]
    np.testing.assert_allclose(r["baseline_mse"], np.mean((miss - mean[mask]) ** 2), rtol=1e-6)
    p = np.clip(np.broadcast_to(mean[mask], miss.shape), 1e-6, 1 - 1e-6)
    bce = -np.mean(miss * np.log(p) + (1 - miss) * np.log(1 - p))
    np.testing.assert_allclose(r["baseline_bce"], bce, rtol=1e-6)
    assert r["n_missing"] == 80 and r["filled"].shape == X.shape
    np.testing.assert_allclose(r["mse"], np.mean((r["filled"][:, mask] - miss) ** 2), rtol=1e-6)


def test_bad_input(model):
    X = np.random.default_rng(4).random((2, 16))
    with pytest.raises(TypeError, match="boolean"):
        inpaint(model, X, np.ones(16))
    with pytest.raises(ValueError, match="broadcast"):
        inpaint(model, X, np.ones(15, bool))
    with pytest.raises(ValueError, match="nothing missing"):
        inpaint_report(model, X, np.zeros(16, bool), mean_image=X.mean(0))
    with pytest.raises(ValueError, match="NaN"):
        inpaint(model, np.full((2, 16), np.nan), half_mask((4, 4)))
