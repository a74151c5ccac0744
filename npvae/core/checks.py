"""Input validation shared by every entry point: name the problem and the fix."""

from __future__ import annotations

import numbers

import numpy as np


def as_data(x, dtype, argname="x", dim=None, owner="the model"):
    """Return ``x`` as a C-contiguous 2-D array of ``dtype``, checked for shape and values.

    Copies only when ``x`` is not already such an array. Raises TypeError for non-numeric
    or sparse data and ValueError for complex values, a wrong shape, an empty batch or
    NaN/inf values. An object array of numbers is read as float64. The messages follow
    scikit-learn's where it has one (its estimator checks look for them); ``owner`` names
    the estimator in the one about a wrong number of features.
    """
    if hasattr(x, "toarray") and hasattr(x, "nnz"):  # scipy.sparse, without importing it
        raise TypeError(f"{argname} is a sparse matrix; sparse input is not supported: pass "
                        f"{argname}.toarray()")
    a = np.asarray(x)
    if a.dtype == object:
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argname} must be a numeric array; it has dtype object with an "
                            f"entry that is not a number ({exc})") from None
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{argname} must be a numeric array, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise ValueError(f"Complex data not supported: {argname} has dtype {a.dtype}; pass "
                         "its real part or its magnitude")
    if a.ndim == 1 and dim is not None and a.shape[0] == dim:
        raise ValueError(
            f"{argname} has shape {a.shape} but must be a batch of shape (n, {dim}). Reshape "
            f"your data: {argname}[None, :] for one example"
        )
    if a.ndim != 2:
        raise ValueError(
            f"{argname} must be 2-D (n_samples, n_features), got shape {a.shape}; "
            "flatten images with x.reshape(len(x), -1)"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{argname} is empty (0 rows); pass at least one example")
    if a.shape[1] == 0:
        raise ValueError(f"{argname} has 0 feature(s) (shape={a.shape}) while a minimum of 1 "
                         "is required.")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{argname} has {a.shape[1]} features, but {owner} is expecting "
                         f"{dim} features as input")
    a = np.ascontiguousarray(a, dtype=dtype)
    check_finite(a, argname)
    return a


def check_finite(a, argname):
    """Raise ValueError if ``a`` holds NaN or inf (a cheap sum first, then the exact check)."""
    if np.isfinite(a.sum()):
        return
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{argname} contains {int(bad.sum())} NaN or inf values (first at index {first}); "
            "remove or impute them before training"
        )


def positive_int(value, argname, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{argname} must be >= {minimum}, got {value}")
    return int(value)


def nonnegative_float(value, argname):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{argname} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{argname} must be a finite number >= 0, got {value!r}")
    return v


def positive_float(value, argname):
    v = nonnegative_float(value, argname)
    if v == 0:
        raise ValueError(f"{argname} must be > 0, got {value!r}")
    return v


def float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt
