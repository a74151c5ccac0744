"""The applications on small VAEs trained on sprites for a few seconds.

The sets are cut-down sprite grids (20x20 pixels, scale fixed) so that a tiny MLP learns
them in seconds; examples/ runs the same checks on the full set.
"""

import numpy as np
import pytest

from npvae import VAE
from npvae.apps import (
    CenteredKNN,
    class_samples,
    corrupt,
    half_mask,
    inpaint_report,
    one_hot,
    random_mask,
)
from npvae.datasets import make_sprites, render_sprites

SIZE = 20
FIT = {"batch_size": 32, "lr": 3e-3, "progress": False, "threads": 1}


def small_model(**kw):
    return VAE(**{"latent_dim": 6, "hidden": (128,), "seed": 0, **kw})


# ------------------------------------------------------------------ conditional VAE


@pytest.fixture(scope="module")
def centred():
    """Every shape x 16 rotations, centred, full scale: 48 images."""
    return make_sprites(None, size=SIZE, n_positions=1, n_scales=1, n_rotations=16)


def test_cvae_samples_are_recognised_as_the_requested_shape(centred):
    # a classifier trained on the real images, checked on real shapes at unseen rotations
    clf = CenteredKNN(centred.image_shape).fit(centred.images, centred.labels)
    rng = np.random.default_rng(0)
    f = np.column_stack([np.repeat(np.arange(3), 50), np.ones(150),
                         rng.uniform(0, 2 * np.pi, 150), np.full(150, 0.5), np.full(150, 0.5)])
    real_acc = clf.score(render_sprites(f, size=SIZE), f[:, 0].astype(int))
    assert real_acc > 0.9, real_acc

    X = np.tile(centred.images, (32, 1))
    y = one_hot(np.tile(centred.labels, 32), 3)
    cvae = small_model(latent_dim=4, cond_dim=3).fit(X, y, epochs=6, **FIT)
    images, labels = class_samples(cvae, 100, rng=1)
    pred = clf.predict(images)
    acc = float(np.mean(pred == labels))
    assert acc > 0.7, (acc, np.bincount(pred, minlength=3))  # chance: 1/3
    # the label drives the shape: the same latents asked as another class change class
    assert np.mean(pred == np.roll(labels, 100)) < 0.5


def test_cvae_digit_samples_are_recognised_as_the_requested_digit():
    # scikit-learn's digits through the real loader; a 1-NN classifier trained on the real
    # training images. The budget: 20 seeds gave 0.981-0.999 (median 0.991), both backends
    # (examples/conditional_digits.py traces how the share grows with training)
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    from npvae.datasets import load_dataset

    ds = load_dataset("digits")
    clf = CenteredKNN(ds.image_shape).fit(ds.x_train, ds.y_train)
    assert clf.score(ds.x_test, ds.y_test) > 0.95
    cvae = small_model(latent_dim=4, hidden=(256,), cond_dim=10).fit(
        ds.x_train, one_hot(ds.y_train, 10), epochs=15, lr=3e-3, lr_schedule="cosine",
        batch_size=128, progress=False, threads=1)
    images, labels = class_samples(cvae, 100, rng=0, shared_z=False)
    pred = clf.predict(images)
    per_class = [np.mean(pred[labels == k] == k) for k in range(10)]
    assert np.mean(pred == labels) >= 0.9 and min(per_class) >= 0.7, per_class
    # the label, not z, picks the digit: test images' z decoded as the next digit
    mu = cvae.encode(ds.x_test, one_hot(ds.y_test, 10))[0]
    other = (ds.y_test + 1) % 10
    assert clf.score(cvae.decode(mu, one_hot(other, 10)), other) >= 0.9


# ------------------------------------------------------- in-painting and de-noising


@pytest.fixture(scope="module")
def grid():
    """3 shapes x 8 rotations x 3 x 3 positions (216 images), and a test draw between
    the training rotations."""
    train = make_sprites(None, size=SIZE, n_positions=3, n_scales=1, n_rotations=8)
    test = make_sprites(200, size=SIZE, n_positions=3, n_scales=1, n_rotations=16, seed=5,
                        replace=True)
    return np.tile(train.images, (12, 1)), test.images


@pytest.fixture(scope="module")
def vae(grid):
    return small_model().fit(grid[0], epochs=6, **FIT)


def test_inpainting_beats_the_mean_image(vae, grid):
    X, T = grid
    mean = X.mean(axis=0)
    half = half_mask((SIZE, SIZE))
    r = inpaint_report(vae, T, random_mask(T.shape, 0.5, 0), mean_image=mean, n_iter=30)
    assert r["mse"] < 0.5 * r["baseline_mse"] and r["bce"] < 0.5 * r["baseline_bce"], r
    # right half: where part of the shape shows, the model completes it; where none of it
    # shows there is nothing to go on and the mean image (a blur) has the lower MSE
    visible = T[:, ~half].sum(1) / T.sum(1)
    seen = visible > 0.3
    r = inpaint_report(vae, T[seen], half, mean_image=mean, n_iter=30)
    assert r["mse"] < 0.7 * r["baseline_mse"], r
    np.testing.assert_array_equal(r["filled"][:, ~half], T[seen][:, ~half])


def test_denoising_vae_beats_a_plain_vae_on_corrupted_input(vae, grid):
    X, T = grid
    dvae = small_model().fit(X, epochs=6, corruption="mask", corruption_level=0.5, **FIT)
    noisy = corrupt(T, "mask", 0.5, rng=1)

    def mse(a):
        return float(np.mean((a - T) ** 2))

    d, p = mse(dvae.denoise(noisy)), mse(vae.denoise(noisy))
    assert d < 0.9 * p < 0.9 * mse(noisy), (d, p, mse(noisy))
