"""Datasets for npvae: built-in sprites, scikit-learn's digits, (Fashion-)MNIST and user files.

>>> from npvae.datasets import load_dataset
>>> ds = load_dataset("sprites")          # 20,000 / 2,000 binary 32x32 shapes, no download
>>> ds.x_train.shape, ds.x_train.dtype
((20000, 1024), dtype('float32'))

Every dataset comes back as a :class:`Dataset` whose ``x_*`` arrays are float32 in [0, 1] and
2-D (n, d), with ``image_shape`` telling how to fold a row back into an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import (
    ArrayData,
    binarize_array,
    check_images,
    check_labels,
    load_array_file,
    prepare,
    scale_and_binarize,
)
from .download import ChecksumError, DownloadError, MnistArrays, download_files, fetch_mnist
from .idx import encode_idx, read_idx, write_idx
from .sprites import FACTOR_NAMES, SHAPE_NAMES, Sprites, factor_grid, make_sprites, render_sprites

__all__ = [
    "ArrayData", "ChecksumError", "DATASET_NAMES", "Dataset", "DownloadError", "FACTOR_NAMES",
    "MnistArrays", "SHAPE_NAMES", "Sprites", "binarize_array", "check_images", "check_labels",
    "dataset_name", "download_files", "encode_idx", "factor_grid", "fetch_mnist",
    "load_array_file",
    "load_dataset", "make_sprites", "prepare", "read_idx", "render_sprites",
    "scale_and_binarize", "write_idx",
]

DATASET_NAMES = ("sprites", "digits", "mnist", "fashion-mnist", "file")
_ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "fmnist": "fashion-mnist", "npz": "file", "npy": "file"}
FASHION_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot")


@dataclass(eq=False)
class Dataset:
    """A train/test split ready for training.

    Attributes
    ----------
    name : str
    x_train, x_test : ndarray of shape (n, d), float32 in [0, 1]
    y_train, y_test : ndarray of shape (n,) or (n, k), or None
        Class labels (int64) or metadata.
    image_shape : tuple of int or None
        ``(h, w)`` of one image; ``x[i].reshape(image_shape)`` is an image.
    label_names : tuple of str or None
        Name of each class index.
    factors_train, factors_test : ndarray of shape (n, 5), float32, or None
        Sprites only: generating factor values (see ``factor_names``).
    factor_classes_train, factor_classes_test : ndarray of shape (n, 5), int64, or None
        Sprites only: index of each factor value in ``factor_values``.
    factor_names : tuple of str or None
    factor_values : tuple of ndarray or None
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    image_shape: tuple | None
    label_names: tuple | None = None
    factors_train: np.ndarray | None = None
    factors_test: np.ndarray | None = None
    factor_classes_train: np.ndarray | None = None
    factor_classes_test: np.ndarray | None = None
    factor_names: tuple | None = None
    factor_values: tuple | None = None

    @property
    def n_features(self):
        """Number of values per sample, ``x_train.shape[1]``."""
        return self.x_train.shape[1]

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, image_shape={self.image_shape})")


def dataset_name(name):
    """The canonical name of a dataset: case, ``_``/``-`` and aliases (``"fashion"``,
    ``"fmnist"``, ...) do not matter. Raises ValueError for an unknown name."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {DATASET_NAMES}")
    kind = name.strip().lower().replace("_", "-")
    kind = _ALIASES.get(kind, kind)
    if kind not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return kind


def load_dataset(name, *, data=None, seed=0, cache_dir=None, n_train=None, n_test=None,
                 size=None, progress=True, key=None, label_key=None, test_fraction=0.1,
                 scale="auto", timeout=60.0):
    """Load a dataset by name, as float32 in [0, 1] with a deterministic train/test split.

    Parameters
    ----------
    name : {"sprites", "digits", "mnist", "fashion-mnist", "file"}
        ``"sprites"``: procedurally generated shapes with known factors (no download).
        ``"digits"``: scikit-learn's bundled 8x8 digits (1,797 images, needs scikit-learn).
        ``"mnist"``, ``"fashion-mnist"``: 28x28 images, downloaded once to a cache (see
        :func:`fetch_mnist`). ``"file"``: a user ``.npy``/``.npz`` file given as ``data``.
    data : str or os.PathLike, optional
        The file for ``name="file"``.
    seed : int
        Seed of the sprite draw and of every split or subset; the same seed gives the same data.
    cache_dir : str or os.PathLike, optional
        Cache root for (Fashion-)MNIST.
    n_train, n_test : int, optional
        Sizes. Defaults: sprites 20,000 / 2,000; digits 1,500 / 297; (Fashion-)MNIST the full
        60,000 / 10,000 (a smaller number takes a seeded random subset); files: the remainder /
        ``test_fraction`` of the rows.
    size : int, optional
        Sprites image side (default 32; 64 also makes sense).
    progress : bool
        Progress bars while downloading.
    key, label_key : str, optional
        Array names inside a ``.npz`` (see :func:`load_array_file`).
    test_fraction : float
        Share of a user file's rows held out for testing, when ``n_test`` is not given.
    scale : {"auto", "none", "minmax"} or positive number
        How a user file's values are brought to [0, 1] (see :func:`prepare`).
    timeout : float, default 60
        (Fashion-)MNIST downloads: seconds to wait for the server on each read; one file may
        take ``10 * timeout`` in all (see :func:`fetch_mnist`).

    Returns
    -------
    Dataset
    """
    kind = dataset_name(name)
    if data is not None and kind != "file":
        raise ValueError(f"data= is only used with name='file' (got name={name!r})")
    if size is not None and kind != "sprites":
        raise ValueError(f"size= is only used with name='sprites' (got name={name!r})")
    if not (isinstance(scale, str) and scale == "auto") and kind != "file":
        raise ValueError(f"scale= is only used with name='file' (got name={name!r}); the "
                         "built-in datasets are already scaled to [0, 1]")
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"{label} must be a non-negative integer or None, got {value!r}")
    rng = np.random.default_rng(seed)
    if kind == "sprites":
        return _sprites(seed, 20000 if n_train is None else n_train,
                        2000 if n_test is None else n_test, 32 if size is None else size)
    if kind == "digits":
        return _digits(rng, n_train, 297 if n_test is None else n_test)
    if kind == "file":
        if data is None:
            raise ValueError("name='file' needs data=<path to a .npy or .npz file>")
        return _file(data, rng, n_train, n_test, key, label_key, test_fraction, scale)
    raw = fetch_mnist(kind, cache_dir=cache_dir, progress=progress, timeout=timeout)
    x_train, y_train = _subset(raw.x_train, raw.y_train, n_train, rng, "n_train")
    x_test, y_test = _subset(raw.x_test, raw.y_test, n_test, rng, "n_test")
    labels = FASHION_LABELS if kind == "fashion-mnist" else tuple(str(i) for i in range(10))
    return Dataset(name=kind, x_train=_unit(x_train, 255.0), y_train=y_train.astype(np.int64),
                   x_test=_unit(x_test, 255.0), y_test=y_test.astype(np.int64),
                   image_shape=tuple(raw.x_train.shape[1:]), label_names=labels)


def _unit(x, top):
    return (np.asarray(x, dtype=np.float32).reshape(len(x), -1) / np.float32(top))


def _subset(x, y, n, rng, label):
    if n is None:
        return x, y
    if n > len(x):
        raise ValueError(f"{label}={n} exceeds the {len(x)} samples available")
    idx = np.sort(rng.permutation(len(x))[:n])
    return x[idx], None if y is None else y[idx]


def _sprites(seed, n_train, n_test, size):
    s = make_sprites(n_train + n_test, size=size, seed=seed)
    tr, te = slice(0, n_train), slice(n_train, n_train + n_test)
    return Dataset(name="sprites", x_train=s.images[tr], y_train=s.labels[tr],
                   x_test=s.images[te], y_test=s.labels[te], image_shape=s.image_shape,
                   label_names=s.shape_names, factors_train=s.factors[tr],
                   factors_test=s.factors[te], factor_classes_train=s.factor_classes[tr],
                   factor_classes_test=s.factor_classes[te], factor_names=s.factor_names,
                   factor_values=s.factor_values)


def _digits(rng, n_train, n_test):
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError('the "digits" dataset needs scikit-learn: pip install "npvae[digits]" '
                          "(or pip install scikit-learn)") from exc
    bunch = load_digits()
    x, y = bunch.data, bunch.target.astype(np.int64)
    n = len(x)
    if n_train is None:
        n_train = n - n_test
    if n_train + n_test > n:
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {n} digits")
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:n_test + n_train]
    return Dataset(name="digits", x_train=_unit(x[train], 16.0), y_train=y[train],
                   x_test=_unit(x[test], 16.0), y_test=y[test], image_shape=(8, 8),
                   label_names=tuple(str(i) for i in range(10)))


def _file(path, rng, n_train, n_test, key, label_key, test_fraction, scale):
    arrays = load_array_file(path, key=key, label_key=label_key)
    x = prepare(arrays.x, scale=scale)
    n = len(x)
    if n_test is None:
        if not 0 <= test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
        n_test = int(round(test_fraction * n))
    if n_train is None:
        n_train = n - n_test
    if n_train + n_test > n:
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {n} rows of {path}")
    perm = rng.permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:n_test + n_train])
    y = arrays.y
    if y is not None and y.dtype.kind in "biu":
        y = y.astype(np.int64)
    return Dataset(name="file", x_train=x[train], y_train=None if y is None else y[train],
                   x_test=x[test], y_test=None if y is None else y[test],
                   image_shape=arrays.image_shape)
