"""The data of a command-line run: the dataset its options describe (binarised as they
say, split with a seed of its own), its class labels for ``--conditional`` and their
one-hot rows, and the image shape of its rows."""

from __future__ import annotations

import math

import numpy as np

from npvae.cli.errors import CLIError, one_line

MAX_CLASSES = 10_000  # one-hot columns --conditional may build
DATA_SEED = 0  # the data draw and split never depend on --seed, so runs compare on one test set


def load_data(opts, *, progress=True):
    """Load the dataset that ``opts`` (a dict of CLI options) describes.

    The split depends on ``n_train`` too (sprites draw train and test together), so
    ``eval`` passes the run's ``n_train`` to get the run's test set.

    Returns ``(dataset, x_test)``: ``x_test`` is binarised the way the options say
    (``stochastic``: one fixed draw), so figures, validation and ``eval`` see the same data.
    ``dataset.x_train`` is thresholded for ``--binarize threshold`` and left for ``fit`` to
    redraw every epoch with ``stochastic``.
    """
    from npvae.datasets import DownloadError, binarize_array, load_dataset

    name, data = opts.get("dataset") or "sprites", opts.get("data")
    n_train, n_test = opts.get("n_train"), opts.get("n_test")
    try:
        if data is not None:
            ds = _load_file(data, opts.get("scale") or "auto", n_train, n_test)
        else:
            if opts.get("scale") not in (None, "auto"):
                raise CLIError("--scale applies to --data files only; the built-in datasets "
                               "are already scaled to [0, 1]")
            ds = load_dataset(name, seed=DATA_SEED, cache_dir=opts.get("cache_dir"),
                              n_train=n_train, n_test=n_test, progress=progress,
                              timeout=opts.get("download_timeout") or 60.0)
    except FileNotFoundError as exc:
        raise CLIError(f"no such data file: {exc.filename or data}; pass an existing .npy "
                       "or .npz file to --data") from exc
    except DownloadError as exc:
        raise CLIError(f"{one_line(exc)} (the command line's cache folder is --cache-dir "
                       "or $NPVAE_DATA_DIR)") from exc
    except ImportError as exc:
        raise CLIError(one_line(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc)) from exc
    if len(ds.x_test) == 0:
        raise CLIError(f"the {ds.name} test split is empty; pass --n-test N with N >= 1")
    binarize = opts.get("binarize") or "none"
    x_test = ds.x_test
    if binarize == "threshold":
        ds.x_train = binarize_array(ds.x_train, "threshold")
        x_test = binarize_array(x_test, "threshold")
    elif binarize == "stochastic":
        for part, x in (("training", ds.x_train), ("test", x_test)):
            if x.min() < 0 or x.max() > 1:
                raise CLIError(f"--binarize stochastic draws Bernoulli(x) and needs values in "
                               f"[0, 1], but the {part} data spans [{x.min():g}, {x.max():g}]; "
                               "pass --scale auto, minmax or the maximum value instead of "
                               "--scale none")
        x_test = binarize_array(x_test, "stochastic",
                                rng=np.random.default_rng([DATA_SEED, 0xB1]))
    return ds, x_test


def _load_file(path, scale, n_train, n_test):
    """``load_dataset("file", data=path)`` with the run's seed, ``--scale`` and sizes."""
    from npvae.datasets import load_dataset

    if isinstance(scale, str) and scale not in ("auto", "none", "minmax"):
        try:
            scale = float(scale)
        except ValueError:
            raise CLIError(f"--scale must be auto, none, minmax or a number (the data's "
                           f"maximum, e.g. 255), got {scale!r}") from None
    ds = load_dataset("file", data=path, seed=DATA_SEED, n_train=n_train, n_test=n_test,
                      scale=scale)
    if len(ds.x_train) < 1:
        raise CLIError(f"{path} leaves no training rows; pass a smaller --n-test")
    return ds


def class_info(ds):
    """``(n_classes, names)`` of a dataset's integer class labels, for ``--conditional``."""
    y = ds.y_train
    if y is None:
        raise CLIError("--conditional needs class labels, and this data has none; for a "
                       "--data .npz file, save integer labels as 'y' beside 'x'")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CLIError(f"--conditional needs one integer class label per row, got labels of "
                       f"shape {y.shape} and dtype {y.dtype}")
    lo = min(int(y.min()), int(ds.y_test.min()) if ds.y_test is not None else 0)
    if lo < 0:
        raise CLIError("--conditional needs class labels 0, 1, ..., K-1; found a negative one")
    n = int(max(y.max(), ds.y_test.max() if ds.y_test is not None else 0)) + 1
    if n > MAX_CLASSES or n > len(y) + (0 if ds.y_test is None else len(ds.y_test)):
        raise CLIError(f"--conditional one-hot encodes the labels 0..K-1, and the labels go up "
                       f"to {n - 1}: that would be {n} columns for {len(y)} training rows "
                       f"(at most {MAX_CLASSES}, and not more than the rows); re-number the "
                       "classes 0..K-1, e.g. y = np.unique(y, return_inverse=True)[1]")
    names = list(ds.label_names) if ds.label_names and len(ds.label_names) >= n \
        else [str(i) for i in range(n)]
    return n, names


def one_hot(labels, n, dtype=np.float32):
    out = np.zeros((len(labels), n), dtype=dtype)
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1
    return out


def image_shape_for(dim, shape=None):
    """``shape`` if given, else a square side for ``dim`` features, else None."""
    if shape:
        return tuple(int(s) for s in shape)
    side = math.isqrt(int(dim))
    return (side, side) if side * side == dim else None
