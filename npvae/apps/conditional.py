"""Conditional VAE helpers: one-hot metadata, class-conditional samples, and a small
shape classifier to check that the samples look like the class asked for.

A conditional VAE (Sohn et al. 2015) is any :class:`npvae.VAE` built with ``cond_dim=C``:
the metadata ``y`` (a one-hot class, or any real vector) is concatenated to ``x`` when
encoding and to ``z`` when decoding, so ``sample(n, y=one_hot(k, K))`` draws ``z ~ N(0, I)``
and decodes it *as class k*.
"""

from __future__ import annotations

import numpy as np

__all__ = ["one_hot", "class_samples", "CenteredKNN"]


def one_hot(labels, n_classes=None, *, dtype=np.float32):
    """Rows of the identity: ``one_hot([2, 0], 3) == [[0, 0, 1], [1, 0, 0]]``.

    Parameters
    ----------
    labels : int or array_like of int, shape (n,)
        Class indices in ``[0, n_classes)``. A scalar gives one row.
    n_classes : int, optional
        Default ``max(labels) + 1``.
    dtype : numpy dtype, default float32

    Returns
    -------
    ndarray (n, n_classes)
    """
    lab = np.atleast_1d(np.asarray(labels))
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {lab.shape}")
    if lab.size and not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise ValueError("labels must be integers (class indices)")
    lab = lab.astype(np.int64)
    if n_classes is None:
        if lab.size == 0:
            raise ValueError("n_classes is needed when labels is empty")
        n_classes = int(lab.max()) + 1
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in "
                         f"[{lab.min()}, {lab.max()}]")
    out = np.zeros((lab.size, int(n_classes)), dtype=dtype)
    out[np.arange(lab.size), lab] = 1
    return out


def class_samples(model, n_per_class, n_classes=None, *, rng=None, shared_z=True):
    """Draw ``n_per_class`` samples of every class from a one-hot conditional model.

    Parameters
    ----------
    model : npvae.VAE
        Built with ``cond_dim = n_classes``.
    n_per_class : int
    n_classes : int, optional
        Default ``model.cond_dim``.
    rng : numpy.random.Generator or int, optional
    shared_z : bool, default True
        Decode the same ``n_per_class`` latents for every class, so column ``j`` of the
        result shows one "style" ``z_j`` rendered as each class.

    Returns
    -------
    images : ndarray (n_classes * n_per_class, D)
        Class-major: rows ``k * n_per_class ... (k + 1) * n_per_class - 1`` are class ``k``.
    labels : ndarray (n_classes * n_per_class,) of int64
    """
    n_classes = model.cond_dim if n_classes is None else int(n_classes)
    if n_classes < 1 or n_classes != model.cond_dim:
        raise ValueError(f"the model has cond_dim={model.cond_dim}; one-hot samples need "
                         f"n_classes == cond_dim, got {n_classes}")
    n = int(n_per_class)
    if n < 1:
        raise ValueError(f"n_per_class must be positive, got {n_per_class!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels = np.repeat(np.arange(n_classes), n)
    if shared_z:
        z = np.tile(rng.standard_normal((n, model.latent_dim)), (n_classes, 1))
    else:
        z = rng.standard_normal((n_classes * n, model.latent_dim))
    images = model.decode(z.astype(model.dtype), one_hot(labels, n_classes, dtype=model.dtype))
    return images, labels


class CenteredKNN:
    """k-nearest-neighbour classifier of images after moving each image's centre of mass
    to the middle of the frame (so it ignores position), in plain NumPy.

    On the sprites it tells square / ellipse / heart apart (a linear model on raw pixels
    does not: the shapes move around). Used to check that a conditional VAE draws the
    shape it is asked for.

    Parameters
    ----------
    image_shape : (h, w)
    k : int, default 1
    binarize : float or None, default None
        Threshold images (training and query) at this value before centring.
    """

    def __init__(self, image_shape, k=1, *, binarize=None):
        self.image_shape = tuple(int(s) for s in image_shape)
        self.k = int(k)
        self.binarize = binarize

    def _features(self, X):
        h, w = self.image_shape
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != h * w:
            raise ValueError(f"X must have shape (n, {h * w}), got {X.shape}")
        if self.binarize is not None:
            X = (X > self.binarize).astype(np.float64)
        imgs = X.reshape(-1, h, w)
        mass = imgs.sum(axis=(1, 2))
        safe = np.where(mass > 0, mass, 1.0)
        cy = imgs.sum(axis=2) @ np.arange(h) / safe
        cx = imgs.sum(axis=1) @ np.arange(w) / safe
        dy = np.rint((h - 1) / 2 - np.where(mass > 0, cy, (h - 1) / 2)).astype(int)
        dx = np.rint((w - 1) / 2 - np.where(mass > 0, cx, (w - 1) / 2)).astype(int)
        out = np.empty_like(imgs)
        for i in range(len(imgs)):
            out[i] = np.roll(imgs[i], (dy[i], dx[i]), axis=(0, 1))
        return out.reshape(len(X), -1)

    def fit(self, X, labels):
        """Store the centred training images and their integer labels; return self."""
        self.features_ = self._features(X)
        self.labels_ = np.asarray(labels).astype(np.int64)
        if self.labels_.shape != (len(self.features_),):
            raise ValueError("labels must have one entry per row of X")
        self.n_classes_ = int(self.labels_.max()) + 1
        self._sq = (self.features_ ** 2).sum(axis=1)
        return self

    def predict(self, X, *, batch_size=512):
        """Majority vote of the ``k`` nearest training images (Euclidean), shape (n,)."""
        F = self._features(X)
        k = min(self.k, len(self.features_))
        out = np.empty(len(F), dtype=np.int64)
        for s in range(0, len(F), batch_size):
            q = F[s:s + batch_size]
            d = (q ** 2).sum(1)[:, None] - 2.0 * q @ self.features_.T + self._sq[None, :]
            nn = np.argpartition(d, k - 1, axis=1)[:, :k]
            votes = np.zeros((len(q), self.n_classes_))
            np.add.at(votes, (np.repeat(np.arange(len(q)), k), self.labels_[nn].ravel()), 1)
            out[s:s + batch_size] = votes.argmax(axis=1)
        return out

    def score(self, X, labels):
        """Accuracy on ``(X, labels)``."""
        return float(np.mean(self.predict(X) == np.asarray(labels)))
