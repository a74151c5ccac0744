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


def _got(value):
    """``3.5 (float)``: a value from the caller, its repr cut short, and its type."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:60] + "..."
    return f"{text} ({type(value).__name__})"


def is_integer(value):
    """True for Python and NumPy integers, False for bools (which are ints to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(value, argname, minimum=1):
    """An integer ``>= minimum`` (TypeError for a bool, float, str or None)."""
    if not is_integer(value):
        raise TypeError(f"{argname} must be an integer >= {minimum}, got {_got(value)}")
    if value < minimum:
        raise ValueError(f"{argname} must be >= {minimum}, got {value}")
    return int(value)


def seed(value, argname="seed"):
    """A non-negative integer seed."""
    if not is_integer(value) or value < 0:
        raise (ValueError if is_integer(value) else TypeError)(
            f"{argname} must be a non-negative integer, got {_got(value)}")
    return int(value)


def _real(value, argname, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argname} must be {what}, got {_got(value)}; pass a number such "
                        "as 1e-3, not a string or a flag")
    return float(value)


def nonnegative_float(value, argname):
    """A finite real number >= 0 (TypeError for a str, bool or None)."""
    v = _real(value, argname, "a finite number >= 0")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{argname} must be a finite number >= 0, got {value!r}")
    return v


def positive_float(value, argname):
    """A finite real number > 0 (TypeError for a str, bool or None)."""
    v = _real(value, argname, "a positive finite number")
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{argname} must be a positive finite number, got {value!r}")
    return v


def fraction(value, argname):
    """A real number in [0, 1) (a momentum, an Adam beta)."""
    v = _real(value, argname, "a number in [0, 1)")
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{argname} must be in [0, 1), got {value!r}")
    return v


def optional(check, value, argname, *args):
    """``None`` or ``check(value, argname, *args)``."""
    return None if value is None else check(value, argname, *args)


def flag(value, argname):
    """A bool (``progress='no'`` would be true: refuse it)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argname} must be True or False, got {_got(value)}")
    return bool(value)


def choice(value, argname, choices):
    """One of ``choices`` (compared with ``==``, so only hashable-free equality)."""
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"{argname} must be one of {', '.join(map(repr, choices))}, "
                         f"got {_got(value)}")
    return value


MAX_LAYERS = 64


def layer_sizes(value, argname):
    """A layer width or a sequence of widths -> tuple of int (``()`` is no hidden layer)."""
    if is_integer(value):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{argname} must be a sequence of layer widths such as (400,) or "
                        f"(512, 256), or () for none, got {_got(value)}")
    if len(value) > MAX_LAYERS:
        raise ValueError(f"{argname} has {len(value)} layers; at most {MAX_LAYERS} are "
                         "supported")
    for s in value:
        if not is_integer(s):
            raise TypeError(f"every entry of {argname} must be an integer width, got {_got(s)}")
        if s < 1:
            raise ValueError(f"every entry of {argname} must be >= 1, got {s}")
    return tuple(int(s) for s in value)


def callbacks(value, argname="callbacks"):
    """A list or tuple of Callback objects or callables ``f(model, record)``."""
    if callable(value) and not isinstance(value, (list, tuple)):
        raise TypeError(f"{argname} must be a list of callbacks; wrap the one you have: "
                        f"{argname}=[{getattr(value, '__name__', 'cb')}]")
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{argname} must be a list or tuple of Callback objects or callables "
                        f"f(model, record), got {_got(value)}")
    hooks = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_epoch_end", "on_train_end")
    for cb in value:
        if not callable(cb) and not any(hasattr(cb, h) for h in hooks):
            raise TypeError(f"every entry of {argname} must be a Callback or a callable "
                            f"f(model, record), got {_got(cb)}")
    return list(value)


def path_or_none(value, argname):
    """None, a str or an os.PathLike."""
    import os

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{argname} must be a file path (str or os.PathLike), got {_got(value)}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError(f"{argname} must be a non-empty path, got {_got(value)}")
    return path


def generator(value, argname="rng"):
    """None, a numpy.random.Generator or a non-negative integer seed."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if is_integer(value) and value >= 0:
        return np.random.default_rng(int(value))
    raise TypeError(f"{argname} must be a numpy.random.Generator, a non-negative integer seed "
                    f"or None, got {_got(value)}")


def float_dtype(dtype, argname="dtype"):
    """float32 or float64, given as a name, a NumPy type or a dtype (None is refused: NumPy
    would read it as float64)."""
    if dtype is None or isinstance(dtype, bool):
        raise TypeError(f"{argname} must be 'float32' or 'float64', got {_got(dtype)}")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{argname} must be 'float32' or 'float64', got {_got(dtype)}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{argname} must be float32 or float64, got {dt}")
    return dt
