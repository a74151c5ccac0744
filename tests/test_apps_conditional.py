"""Conditional VAE helpers: one_hot, class-conditional sampling, the shape classifier."""

import numpy as np
import pytest

from npvae import VAE
from npvae.apps import CenteredKNN, class_samples, one_hot
from npvae.datasets import make_sprites


def test_one_hot():
    np.testing.assert_array_equal(one_hot([2, 0, 1], 3), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert one_hot(1, 4).shape == (1, 4) and one_hot([0, 3]).shape == (2, 4)
    assert one_hot([0], 2, dtype=np.float64).dtype == np.float64
    assert one_hot(np.array([1.0, 0.0]), 2).tolist() == [[0, 1], [1, 0]]
    for bad, msg in (([3], "lie in"), ([-1], "lie in"), ([0.5], "integers")):
        with pytest.raises(ValueError, match=msg):
            one_hot(bad, 3)
    with pytest.raises(ValueError, match="n_classes"):
        one_hot([0], 0)


def test_conditional_sample_differs_by_class():
    m = VAE(input_dim=16, latent_dim=2, hidden=(8,), cond_dim=3, seed=0)
    s = [m.sample(5, y=one_hot([k] * 5, 3), rng=1) for k in range(3)]
    for i in range(3):
        for j in range(i):
            assert np.abs(s[i] - s[j]).max() > 1e-3
    np.testing.assert_array_equal(m.sample(5, y=one_hot([1] * 5, 3), rng=1), s[1])  # seeded
    with pytest.raises(ValueError, match="conditional model needs"):
        m.sample(5, rng=1)


def test_class_samples_layout_and_shared_latents():
    m = VAE(input_dim=16, latent_dim=2, hidden=(8,), cond_dim=3, seed=0)
    imgs, labels = class_samples(m, 4, rng=0)
    assert imgs.shape == (12, 16) and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    z = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(imgs[4:8], m.decode(z, one_hot([1] * 4, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="cond_dim"):
        class_samples(m, 4, n_classes=2)


def test_centered_knn_recognises_real_sprite_shapes_anywhere():
    train = make_sprites(1500, size=20, seed=0)
    test = make_sprites(300, size=20, seed=1)
    clf = CenteredKNN(train.image_shape).fit(train.images, train.labels)
    acc = clf.score(test.images, test.labels)
    assert acc > 0.85, acc  # chance is 1/3; a linear model on raw pixels gets ~0.4
    shifted = np.roll(test.images.reshape(-1, 20, 20), 1, axis=2).reshape(300, -1)
    assert np.mean(clf.predict(shifted) == clf.predict(test.images)) > 0.95  # ignores position
    with pytest.raises(ValueError, match="shape"):
        clf.predict(test.images[:, :10])
