"""What every figure shares: the canvas, the saving, the checks of its inputs."""

import math
import numbers
import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120
CMAP = matplotlib.colormaps["gray"].with_extremes(bad="white")


def new_figure(figsize):
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def finish(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=DPI, format="png")
    return fig


def finite(values, name):
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric: {exc}") from exc
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(bad)}); "
                         "remove or replace those values")
    return arr


def check_images(images, image_shape, name, clip):
    """Return images as a float array (n, h*w), checked against image_shape."""
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2
            or not all(isinstance(s, numbers.Integral) and s > 0 for s in image_shape)):
        raise ValueError(f"image_shape must be (h, w) with positive ints, got {image_shape!r}")
    h, w = (int(s) for s in image_shape)
    arr = finite(images, name)
    if arr.ndim == 3 and arr.shape[1:] == (h, w):
        arr = arr.reshape(len(arr), h * w)
    if arr.ndim != 2 or len(arr) == 0:
        raise ValueError(f"{name} must have shape (n, h * w) with n >= 1, got {arr.shape}")
    if arr.shape[1] != h * w:
        raise ValueError(f"{name} rows have length {arr.shape[1]} but image_shape {(h, w)} "
                         f"needs {h * w}; pass image_shape=(h, w) with h * w = {arr.shape[1]}")
    lo, hi = arr.min(), arr.max()
    if lo < 0.0 or hi > 1.0:
        if not clip:
            raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g}, max "
                             f"{hi:.4g}; rescale them or pass clip=True")
        arr = np.clip(arr, 0.0, 1.0)
    return arr


def check_extent(extent, n):
    try:
        x0, x1, y0, y1 = (float(v) for v in extent)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extent must be (z0_min, z0_max, z1_min, z1_max), got {extent!r}") \
            from exc
    if not all(map(math.isfinite, (x0, x1, y0, y1))):
        raise ValueError(f"extent must be finite, got {extent!r}")
    if n > 1 and not (x0 < x1 and y0 < y1):
        raise ValueError(f"extent must have z0_min < z0_max and z1_min < z1_max, got {extent!r}")
    return x0, x1, y0, y1
