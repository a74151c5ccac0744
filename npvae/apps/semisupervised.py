"""Figures of a semi-supervised model (:class:`~npvae.training.semisupervised.SemiSupervisedVAE`
or :class:`~npvae.training.m1m2.M1M2`): class-conditional samples, one row per class, and
Kingma et al.'s analogies, the style z of test images decoded as every class.

Both work with any model that has ``n_classes``, ``latent_dim``, ``transform(X)`` (the style
z) and ``decode(z, labels)``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["conditional_samples", "analogies", "write_figures"]


def conditional_samples(model, n_per_class, *, rng=None, shared_z=True):
    """``n_per_class`` samples of every class, class-major: rows ``k * n .. (k+1) * n - 1``
    are class ``k``. With ``shared_z`` the same latents are decoded as every class, so column
    ``j`` shows one style as each class. Returns ``(images (K n, D), labels (K n,))``."""
    k, n = model.n_classes, int(n_per_class)
    if n < 1:
        raise ValueError(f"n_per_class must be positive, got {n_per_class!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels = np.repeat(np.arange(k), n)
    z = rng.standard_normal((n if shared_z else k * n, model.latent_dim))
    if shared_z:
        z = np.tile(z, (k, 1))
    return model.decode(z, labels), labels


def analogies(model, X):
    """The style of each row of ``X`` decoded as every class: ``z = model.transform(X)``, then
    ``decode(z, k)`` for k = 0 .. K-1. Returns an array (N, K, D)."""
    z = np.asarray(model.transform(X))
    n, k = len(z), model.n_classes
    out = model.decode(np.repeat(z, k, axis=0), np.tile(np.arange(k), n))
    return np.asarray(out).reshape(n, k, -1)


def write_figures(model, x_test, image_shape, folder, *, y_test=None, label_names=None,
                  n_per_class=10, n_analogies=10, seed=0, prefix="", title=""):
    """Write ``{prefix}samples_by_class.png`` and ``{prefix}analogies.png`` into ``folder``;
    return the file names. The analogies use ``n_analogies`` test images: the first of
    each class in turn when ``y_test`` is given, else the first rows; ``title`` starts
    both figures' titles."""
    from npvae import plot

    k = model.n_classes
    names = [str(c) for c in (label_names or range(k))][:k]
    files = [f"{prefix}samples_by_class.png", f"{prefix}analogies.png"]
    images, _ = conditional_samples(model, n_per_class, rng=np.random.default_rng(seed))
    plot.image_grid(images, image_shape, ncols=n_per_class, clip=True, row_labels=names,
                    title=f"{title}samples by class (each column: one z decoded as every class)",
                    path=os.path.join(folder, files[0]))
    x = np.asarray(x_test)[_one_per_class(y_test, len(x_test), n_analogies)]
    grid = np.concatenate([x[:, None, :], analogies(model, x)], axis=1)  # (n, 1 + K, D)
    plot.image_grid(grid.reshape(-1, grid.shape[-1]), image_shape, ncols=k + 1, clip=True,
                    title=f"{title}analogies: a test image (left), its style z decoded as "
                          + ", ".join(names),
                    path=os.path.join(folder, files[1]))
    return files


def _one_per_class(y, n, count):
    """Row indices: the first row of each class, then the second of each, ... (``count``
    of them); the first ``count`` rows without labels."""
    if y is None:
        return np.arange(min(count, n))
    y = np.asarray(y)
    rank = np.empty(len(y), np.int64)  # how many earlier rows share the row's class
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rank[rows] = np.arange(len(rows))
    order = np.lexsort((y, rank))  # by rank, then class
    return order[:count]
