"""Load user data from .npy/.npz files, validate it, scale it to [0, 1] and binarise it.

Nothing here ever unpickles: files are opened with ``allow_pickle=False``, so an object array
in a file is refused with an error rather than executed.
"""

from __future__ import annotations

import os
from numbers import Real
from typing import NamedTuple

import numpy as np

from npvae.core.memory import check_memory
from npvae.core.safe_npz import NpzReader, open_regular, read_npy

IMAGE_KEYS = ("x", "X", "images", "data")
LABEL_KEYS = ("y", "labels")
SCALES = ("auto", "none", "minmax")
BINARIZE = (None, "threshold", "stochastic")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


class ArrayData(NamedTuple):
    """Arrays read by :func:`load_array_file`.

    Attributes
    ----------
    x : ndarray of shape (n, d)
        The data, flattened to 2-D, in the file's dtype.
    y : ndarray of shape (n,) or (n, k), or None
        Labels or metadata, if the file has them.
    image_shape : tuple of int or None
        ``(h, w)`` when the file stored (n, h, w) images, else None.
    """

    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple | None


def load_array_file(path, *, key=None, label_key=None):
    """Read data (and optional labels) from a .npy or .npz file and validate them.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file holding the data, or a ``.npz`` archive.
    key : str, optional
        Name of the data array in a ``.npz``. By default the first of ``x``, ``X``, ``images``,
        ``data`` that exists.
    label_key : str, optional
        Name of the labels in a ``.npz``. By default ``y`` or ``labels`` if present; labels are
        optional.

    Returns
    -------
    ArrayData
        ``(x, y, image_shape)`` with ``x`` flattened to (n, d).

    Raises
    ------
    ValueError
        Unknown file type, missing array (the message lists the arrays present), an object
        (pickled) array, or data failing :func:`check_images`.
    """
    path = os.fspath(path)
    with open_regular(path) as f:
        head = f.read(6)
    budget = _Budget(path)
    if head == _NPY_MAGIC:
        if key is not None or label_key is not None:
            raise ValueError(f"{path} is a .npy file holding a single array; key= and "
                             "label_key= only apply to .npz archives")
        x, y = read_npy(path, budget=budget), None
    elif head[:4] == _ZIP_MAGIC:
        with NpzReader(path) as archive:
            names = archive.names
            data_key = _pick(names, key, IMAGE_KEYS, path, "data")
            y_key = _pick(names, label_key, LABEL_KEYS, path, "labels", required=False)
            headers = {k: archive.header(k) for k in (data_key, y_key) if k is not None}
            for hd in headers.values():  # every size is known before anything is read
                budget(hd.data_bytes, hd)
            x = archive.read(data_key, headers[data_key])
            y = None if y_key is None else archive.read(y_key, headers[y_key])
    else:
        raise ValueError(f"{path} is neither a .npy nor a .npz file (it starts with {head!r}); "
                         "save arrays with np.save or np.savez")
    x, image_shape = check_images(x, name=os.path.basename(path))
    if y is not None:
        y = check_labels(y, len(x), name=os.path.basename(path))
    return ArrayData(x, y, image_shape)


def _pick(names, wanted, defaults, path, what, required=True):
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"{path} has no array {wanted!r}; it holds {names}")
        return wanted
    for name in defaults:
        if name in names:
            return name
    if required:
        raise ValueError(f"{path} has none of the {what} arrays {list(defaults)}; it holds "
                         f"{names}; pass key=<name> to choose one")
    return None


class _Budget:
    """Refuses arrays whose loading would not fit in memory: the file's own bytes plus the
    float32 copies that scaling and the train/test split make (about 3 values of 4 bytes
    per stored value), summed over the arrays of one file."""

    def __init__(self, path):
        self.path, self.total = path, 0

    def __call__(self, nbytes, header):
        values = header.count
        self.total += nbytes + 12 * values
        check_memory(self.total, f"loading {self.path} ({header.shape} {header.dtype})",
                     "use a smaller file, or a subset of its rows")


def check_images(x, *, name="x"):
    """Validate a data array and flatten it to (n, d).

    Parameters
    ----------
    x : array_like
        (n, d) vectors or (n, h, w) images; bool, integer or floating dtype.
    name : str
        Name used in error messages.

    Returns
    -------
    x2d : ndarray of shape (n, d)
        A view when possible.
    image_shape : tuple of int or None
        ``(h, w)`` for 3-D input, else None.

    Raises
    ------
    TypeError
        Non-numeric dtype (objects, strings, complex, dates).
    ValueError
        Wrong number of dimensions, no samples or no features, NaN or inf values.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {x.dtype}, not numbers; convert it, e.g. "
                        "x.astype(np.float32)")
    if x.ndim == 1:
        raise ValueError(f"{name} is 1-D with shape {x.shape}; data must be (n, d) vectors or "
                         "(n, h, w) images (a single sample: x.reshape(1, -1))")
    if x.ndim == 4:
        raise ValueError(f"{name} is 4-D with shape {x.shape}; only (n, d) or (n, h, w) "
                         "grayscale data is supported: drop a single channel axis "
                         "(x[:, 0] or x[..., 0]) or flatten with x.reshape(len(x), -1)")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} has {x.ndim} dimensions (shape {x.shape}); data must be "
                         "(n, d) vectors or (n, h, w) images")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); it needs at least one sample "
                         "and one feature")
    _check_finite(x, name)
    image_shape = tuple(int(s) for s in x.shape[1:]) if x.ndim == 3 else None
    return x.reshape(len(x), -1), image_shape


def check_labels(y, n, *, name="y"):
    """Validate labels or metadata: numeric, finite, (n,) or (n, k) (an (n, 1) column is
    flattened)."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"labels of {name} have dtype {y.dtype}, not numbers; encode them as "
                        "integers, e.g. np.unique(y, return_inverse=True)[1]")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"labels of {name} have shape {y.shape}; expected ({n},) or ({n}, k) "
                         "to match the data")
    _check_finite(y, f"labels of {name}")
    return y


def _check_finite(a, name):
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    count = int(np.count_nonzero(bad))
    if count:
        first = np.unravel_index(int(np.argmax(bad.ravel())), a.shape)
        index = ", ".join(str(int(i)) for i in first)
        raise ValueError(f"{name} has {count} non-finite value(s) (NaN or inf); the first is "
                         f"at [{index}] = {a[first]}; remove or impute them before training")


def prepare(x, *, scale="auto", binarize=None, threshold=0.5, rng=None, dtype=np.float32):
    """Scale data to [0, 1] and optionally binarise it.

    Parameters
    ----------
    x : array_like
        Numeric data of any shape, finite.
    scale : {"auto", "none", "minmax"} or positive number
        ``"auto"``: uint8 is divided by 255; bool and data already in [0, 1] are kept; other
        integer-valued data in [0, 255] whose maximum is at least 128 is divided by 255; any
        other range is an error asking for an explicit choice. ``"none"``: keep the values.
        ``"minmax"``: ``(x - min) / (max - min)`` over the whole array. A number ``c``: divide
        by ``c`` (e.g. 255, or 16 for scikit-learn's digits); values must then lie in [0, 1].
    binarize : {None, "threshold", "stochastic"}
        ``"threshold"``: ``x > threshold``. ``"stochastic"``: one Bernoulli(x) draw per value
        from ``rng`` (draw again each epoch for the usual dynamically binarised MNIST).
    threshold : float
        Cut-off for ``binarize="threshold"``.
    rng : numpy.random.Generator
        Required for ``binarize="stochastic"``.
    dtype : {numpy.float32, numpy.float64}
        dtype of the result.

    Returns
    -------
    ndarray
        Same shape as ``x``, in [0, 1] (or {0, 1} when binarised).
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if binarize not in BINARIZE:
        raise ValueError(f"unknown binarize={binarize!r}; choose one of {BINARIZE}")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"data has dtype {x.dtype}, not numbers; convert it first")
    _check_finite(x, "data")
    if x.dtype == np.bool_:
        x = x.astype(dtype)
    out = _scale(x, scale).astype(dtype, copy=False)
    if binarize is None:
        return out
    return binarize_array(out, binarize, threshold=threshold, rng=rng)


scale_and_binarize = prepare


def _scale(x, scale):
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    if isinstance(scale, str):
        if scale == "none":
            return x
        if scale == "minmax":
            span = float(hi) - float(lo)
            return (x - lo) / (span if span > 0 else 1.0)
        if scale != "auto":
            raise ValueError(f"unknown scale={scale!r}; choose one of {SCALES} or a number")
        if x.dtype == np.uint8:
            return x / 255.0
        if lo >= 0 and hi <= 1:
            return x
        integral = x.dtype.kind in "iu" or bool(np.all(x == np.round(x)))
        if lo >= 0 and 128 <= hi <= 255 and integral:
            return x / 255.0
        raise ValueError(f"cannot guess how to scale data in [{lo}, {hi}] to [0, 1]; pass "
                         "scale=<maximum value> (e.g. 255 or 16) or scale='minmax'")
    if isinstance(scale, bool) or not isinstance(scale, Real) or not np.isfinite(scale) \
            or scale <= 0:
        raise ValueError(f"scale must be one of {SCALES} or a positive number, got {scale!r}")
    if lo < 0 or hi > scale:
        raise ValueError(f"data in [{lo}, {hi}] does not fit [0, {scale}]; pass the true "
                         "maximum as scale= or use scale='minmax'")
    return x / float(scale)


def binarize_array(x, method="threshold", *, threshold=0.5, rng=None):
    """Binarise data in [0, 1].

    Parameters
    ----------
    x : ndarray of float
    method : {"threshold", "stochastic"}
        ``"threshold"``: ``1`` where ``x > threshold``. ``"stochastic"``: ``1`` with probability
        ``x``, i.e. ``u < x`` with ``u ~ Uniform[0, 1)`` drawn from ``rng``.
    threshold : float
    rng : numpy.random.Generator
        Required for ``"stochastic"``.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x`` (float32 for non-float input), values in {0, 1}.
    """
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    if method == "threshold":
        return (x > threshold).astype(dtype)
    if method != "stochastic":
        raise ValueError(f"unknown binarisation {method!r}; choose 'threshold' or 'stochastic'")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("stochastic binarisation needs rng=np.random.default_rng(seed), got "
                        f"{type(rng).__name__}")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"stochastic binarisation needs values in [0, 1], got "
                         f"[{x.min()}, {x.max()}]; scale the data first")
    return (rng.random(x.shape, dtype=dtype) < x).astype(dtype)
