"""Latent-space tools: slerp geometry, interpolation and traversal order, PCA."""

import numpy as np
import pytest

from npvae import VAE
from npvae.apps import interpolate, latent_map, lerp, pca, slerp, traverse


def angle(u, v):
    return np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))


def test_slerp_endpoints_norms_and_constant_angular_speed():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    b *= np.linalg.norm(a) / np.linalg.norm(b)  # equal norms
    t = np.linspace(0, 1, 11)
    p = slerp(a, b, t)
    np.testing.assert_array_equal(p[0], a)
    np.testing.assert_array_equal(p[-1], b)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), np.linalg.norm(a), rtol=1e-12)
    omega = angle(a, b)
    np.testing.assert_allclose([angle(a, q) for q in p], t * omega, atol=1e-7)
    # the linear path cuts inside the sphere
    assert np.linalg.norm(lerp(a, b, 0.5)[0]) < np.linalg.norm(a) - 1e-3


def test_slerp_unequal_norms_stays_in_the_plane_and_parallel_falls_back():
    a, b = np.array([2.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    t = np.array([0.25, 0.5, 0.9])
    p = slerp(a, b, t)
    assert np.all(p[:, 2] == 0)
    np.testing.assert_allclose([angle(q, a) for q in p], t * np.pi / 2)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), (1 - t) * 2 + t * 1)
    np.testing.assert_allclose(slerp(a, 3 * a, [0.5]), lerp(a, 3 * a, [0.5]))
    np.testing.assert_allclose(slerp(np.zeros(3), b, [0.5]), [[0, 0.5, 0]])
    with pytest.raises(ValueError, match="differ"):
        slerp(a, b[:2], 0.5)


def test_pca_recovers_a_rank_two_set():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((10, 2)))[0].T  # 2 orthonormal rows
    q = np.linalg.qr(rng.standard_normal((300, 2)) - 1)[0]
    q = np.linalg.qr(q - q.mean(0))[0]  # centred, orthonormal columns
    coef = q * [5.0, 1.0]  # uncorrelated, variances 25 : 1
    Z = coef @ basis + rng.standard_normal(10)  # rank 2 plus an offset
    coords, comps, ratio, mean = pca(Z, 2)
    np.testing.assert_allclose(ratio, [25 / 26, 1 / 26])
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(coords @ comps + mean, Z, atol=1e-10)  # nothing lost
    proj = comps @ basis.T  # each component lies in the span of the basis
    np.testing.assert_allclose(np.abs(np.linalg.det(proj)), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.abs(coords), np.abs(coef), atol=1e-10)
    assert np.all(np.abs(coords.mean(0)) < 1e-10)
    # deterministic signs: the largest loading of every component is positive
    assert np.all(comps[np.arange(2), np.abs(comps).argmax(1)] > 0)
    with pytest.raises(ValueError, match="n_components"):
        pca(Z, 11)


@pytest.fixture(scope="module")
def model():
    return VAE(input_dim=12, latent_dim=3, hidden=(8,), seed=0)


def test_interpolate_endpoints_are_the_posterior_means(model):
    rng = np.random.default_rng(2)
    xa, xb = rng.random(12), rng.random(12)
    for method in ("linear", "slerp"):
        z, img = interpolate(model, xa, xb, 5, method)
        assert z.shape == (5, 3) and img.shape == (5, 12)
        np.testing.assert_allclose(z[0], model.encode(xa[None])[0][0], rtol=1e-6)
        np.testing.assert_allclose(z[-1], model.encode(xb[None])[0][0], rtol=1e-6)
        np.testing.assert_allclose(img, model.decode(z.astype(np.float32)), rtol=1e-6)
    with pytest.raises(ValueError, match="method"):
        interpolate(model, xa, xb, 5, "cubic")


def test_traverse_order_matches_traversal_figure(model):
    x = np.random.default_rng(3).random(12)
    values = [-2.0, 0.0, 2.0]
    z, img = traverse(model, x, dims=[2, 0], values=values)
    base = model.encode(x[None])[0][0]
    assert z.shape == (6, 3) and img.shape == (6, 12)
    np.testing.assert_allclose(z[:3, 2], values)
    np.testing.assert_allclose(z[3:, 0], values)
    np.testing.assert_allclose(z[:3, :2], np.tile(base[:2], (3, 1)), rtol=1e-6)
    z0, _ = traverse(model, values=[1.0])  # around the prior mean, every dimension
    np.testing.assert_array_equal(z0, np.eye(3))
    with pytest.raises(ValueError, match="out of range"):
        traverse(model, x, dims=3)


def test_conditional_interpolation_moves_y_too():
    m = VAE(input_dim=12, latent_dim=2, hidden=(8,), cond_dim=2, seed=0)
    x = np.random.default_rng(4).random((2, 12))
    z, img = interpolate(m, x[0], x[1], 3, y_a=[1, 0], y_b=[0, 1])
    np.testing.assert_allclose(img[1], m.decode(z[1:2].astype(np.float32), [[0.5, 0.5]])[0],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="conditional"):
        interpolate(m, x[0], x[1], 3)


def test_latent_map_pca_and_figure(model, tmp_path):
    X = np.random.default_rng(5).random((40, 12))
    labels = np.arange(40) % 3
    res = latent_map(model, X, labels=labels, path=tmp_path / "map.png")
    assert res.method == "pca" and res.coords.shape == (40, 2)
    np.testing.assert_allclose(res.coords, pca(model.encode(X)[0], 2)[0], rtol=1e-6)
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert res.figure.axes[0].get_xlabel().startswith("PC1")
    two = VAE(input_dim=12, latent_dim=2, hidden=(8,), seed=0)
    res2 = latent_map(two, X)
    assert res2.method == "latent" and res2.figure is None
    np.testing.assert_allclose(res2.coords, two.encode(X)[0])
