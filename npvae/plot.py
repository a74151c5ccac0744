"""Matplotlib figures for VAEs: image grids, reconstructions, curves, latent maps.

Every function is pure: it takes arrays, builds a new `matplotlib.figure.Figure`
with an Agg canvas (pyplot and its global state are never touched, so this works
on headless machines and inside other programs' figures), optionally saves a PNG
to ``path``, and returns the Figure.

Images come as flat rows, shape ``(n, h * w)``, with ``image_shape=(h, w)``, and
values in [0, 1] (pass ``clip=True`` to clip other values instead of raising).
"""

import math
import numbers
import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from npvae.core.checks import positive_int

__all__ = [
    "image_grid",
    "latent_scatter",
    "loss_curves",
    "manifold_figure",
    "manifold_latents",
    "reconstruction_figure",
    "traversal_figure",
]

DPI = 120
_GAP = 1  # pixels between tiles
_CMAP = matplotlib.colormaps["gray"].with_extremes(bad="white")


# ----------------------------------------------------------------------------- image figures


def image_grid(images, image_shape, *, ncols=None, title=None, path=None, row_labels=None,
               clip=False):
    """Tile grayscale images into one grid.

    Parameters
    ----------
    images : array_like, shape (n, h * w)
        One flat image per row, values in [0, 1].
    image_shape : tuple of int
        ``(h, w)``.
    ncols : int, optional
        Columns of the grid; default ``ceil(sqrt(n))``.
    title : str, optional
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    row_labels : sequence of str, optional
        One label per grid row, shown at the left.
    clip : bool, default False
        Clip values outside [0, 1] instead of raising ValueError.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = _check_images(images, image_shape, "images", clip)
    n = len(images)
    ncols = math.ceil(math.sqrt(n)) if ncols is None else positive_int(ncols, "ncols")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels has {len(row_labels)} labels but the grid has {nrows} "
                         f"rows ({n} images in {ncols} columns); pass one label per row")
    cells = list(images) + [None] * (nrows * ncols - n)
    return _tile_figure(cells, image_shape, nrows, ncols, title=title, row_labels=row_labels,
                        path=path)


def reconstruction_figure(originals, reconstructions, image_shape, *, path=None, n=10,
                          clip=False):
    """Show originals above their reconstructions.

    Parameters
    ----------
    originals, reconstructions : array_like, shape (m, h * w)
        Matching rows, values in [0, 1].
    image_shape : tuple of int
        ``(h, w)``.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    n : int, default 10
        How many pairs to show (the first ``min(n, m)``). Up to 10 fit in one
        pair of rows; more are laid out as several pairs of rows.
    clip : bool, default False
        Clip values outside [0, 1] instead of raising ValueError.

    Returns
    -------
    matplotlib.figure.Figure
    """
    originals = _check_images(originals, image_shape, "originals", clip)
    reconstructions = _check_images(reconstructions, image_shape, "reconstructions", clip)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions "
                         f"{reconstructions.shape} must have the same shape")
    n = min(positive_int(n, "n"), len(originals))
    ncols = min(n, 10)
    cells, labels = [], []
    for start in range(0, n, ncols):
        stop = min(start + ncols, n)
        pad = [None] * (ncols - (stop - start))
        cells += list(originals[start:stop]) + pad + list(reconstructions[start:stop]) + pad
        labels += ["original", "reconstruction"]
    return _tile_figure(cells, image_shape, len(labels), ncols, title="reconstructions",
                        row_labels=labels, path=path)


def traversal_figure(images, image_shape, n_latent, n_steps, *, values=None, path=None,
                     clip=False):
    """Latent traversals: one row per latent dimension, one column per value.

    Parameters
    ----------
    images : array_like, shape (n_latent * n_steps, h * w)
        Row-major: image ``i * n_steps + j`` decodes latent ``i`` set to step ``j``.
    image_shape : tuple of int
        ``(h, w)``.
    n_latent, n_steps : int
        Rows (labelled ``z0``, ``z1``, ...) and columns of the grid.
    values : array_like, shape (n_steps,), optional
        The traversal values, used as column labels; default the step index.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    clip : bool, default False
        Clip values outside [0, 1] instead of raising ValueError.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = _check_images(images, image_shape, "images", clip)
    n_latent = positive_int(n_latent, "n_latent")
    n_steps = positive_int(n_steps, "n_steps")
    if len(images) != n_latent * n_steps:
        raise ValueError(f"traversal needs n_latent * n_steps = {n_latent * n_steps} images, "
                         f"got {len(images)}")
    if values is None:
        col_labels, xlabel = [str(j) for j in range(n_steps)], "step"
    else:
        values = _finite(values, "values").ravel()
        if len(values) != n_steps:
            raise ValueError(f"values has {len(values)} entries, expected n_steps = {n_steps}")
        col_labels, xlabel = [f"{v:.3g}" for v in values], "traversal value"
    return _tile_figure(list(images), image_shape, n_latent, n_steps, title="latent traversals",
                        row_labels=[f"z{i}" for i in range(n_latent)], col_labels=col_labels,
                        xlabel=xlabel, path=path)


def manifold_latents(n, extent):
    """The latent grid that `manifold_figure` expects, in its order.

    Parameters
    ----------
    n : int
        Points per axis.
    extent : tuple of float
        ``(z0_min, z0_max, z1_min, z1_max)``.

    Returns
    -------
    numpy.ndarray, shape (n * n, 2)
        Row ``i * n + j`` is ``(z0[j], z1[i])`` with ``z0``, ``z1`` evenly spaced
        over the extent: decode these and pass the images to `manifold_figure`.
    """
    n = positive_int(n, "n")
    x0, x1, y0, y1 = _check_extent(extent, n)
    z0, z1 = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.column_stack([z0.ravel(), z1.ravel()])


def manifold_figure(images, image_shape, n, *, extent, path=None, clip=False):
    """The decoded 2-D latent manifold (Kingma & Welling 2014, fig. 4).

    Parameters
    ----------
    images : array_like, shape (n * n, h * w)
        Decodings of `manifold_latents(n, extent)`: image ``i * n + j`` at
        ``(z0[j], z1[i])``. Shown with z0 increasing rightwards and z1 upwards.
    image_shape : tuple of int
        ``(h, w)``.
    n : int
        Images per axis.
    extent : tuple of float
        ``(z0_min, z0_max, z1_min, z1_max)``: the centres of the corner images.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    clip : bool, default False
        Clip values outside [0, 1] instead of raising ValueError.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = _check_images(images, image_shape, "images", clip)
    n = positive_int(n, "n")
    if len(images) != n * n:
        raise ValueError(f"manifold needs n * n = {n * n} images, got {len(images)}")
    x0, x1, y0, y1 = _check_extent(extent, n)
    h, w = image_shape
    # Top block row shows the largest z1, so reverse the rows of the grid.
    rows = images.reshape(n, n, h * w)[::-1].reshape(n * n, h * w)
    mosaic = _mosaic(rows, image_shape, n, n)
    dx = (x1 - x0) / (n - 1) if n > 1 else 1.0
    dy = (y1 - y0) / (n - 1) if n > 1 else 1.0
    px, py = dx / (w + _GAP), dy / (h + _GAP)  # z per pixel: a tile and its gap span dx, dy
    side = float(np.clip(0.45 * n, 4.0, 10.0))
    fig = _new_figure((side + 1.0, side * mosaic.shape[0] / mosaic.shape[1] + 1.0))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap=_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest",
              extent=(x0 - w * px / 2, x1 + w * px / 2, y0 - h * py / 2, y1 + h * py / 2),
              aspect=px / py)
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title("decoded latent manifold")
    return _finish(fig, path)


def _mosaic(cells, image_shape, nrows, ncols):
    """The cells (flat images, row-major; None for an empty cell) as one array with
    ``_GAP`` pixels of NaN (drawn white) between them."""
    h, w = image_shape
    mosaic = np.full((nrows * (h + _GAP) - _GAP, ncols * (w + _GAP) - _GAP), np.nan)
    for k, cell in enumerate(cells):
        if cell is not None:
            r, c = divmod(k, ncols)
            top, left = r * (h + _GAP), c * (w + _GAP)
            mosaic[top:top + h, left:left + w] = cell.reshape(h, w)
    return mosaic


def _tile_figure(cells, image_shape, nrows, ncols, *, title=None, row_labels=None,
                 col_labels=None, xlabel=None, path=None):
    """One imshow of a mosaic; ``None`` cells and gaps are drawn white."""
    h, w = image_shape
    mosaic = _mosaic(cells, image_shape, nrows, ncols)
    width = float(np.clip(0.9 * ncols, 3.0, 12.0))
    height = width * mosaic.shape[0] / mosaic.shape[1]
    extra_w = 1.2 if row_labels is not None else 0.2
    extra_h = 0.3 + (0.4 if title else 0) + (0.5 if col_labels is not None else 0)
    fig = _new_figure((width + extra_w, height + extra_h))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap=_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_yticks([r * (h + _GAP) + (h - 1) / 2 for r in range(nrows)]
                  if row_labels is not None else [])
    if row_labels is not None:
        ax.set_yticklabels([str(label) for label in row_labels])
    ax.set_xticks([c * (w + _GAP) + (w - 1) / 2 for c in range(ncols)]
                  if col_labels is not None else [])
    if col_labels is not None:
        ax.set_xticklabels(col_labels)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
    ax.tick_params(length=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- curves, scatter

_PANELS = [("loss", "-ELBO (loss)"), ("recon", "reconstruction"), ("kl", "KL")]


def loss_curves(history, *, path=None):
    """Training and validation curves: -ELBO, reconstruction term, KL.

    Parameters
    ----------
    history : sequence of dict
        One dict per epoch with any of ``epoch``, ``train_loss``, ``val_loss``,
        ``train_recon``, ``val_recon``, ``train_kl``, ``val_kl``. Missing keys
        and None values are skipped; other keys are ignored. Without ``epoch``,
        epochs are numbered from 1. Non-finite values are not drawn, and the
        legend says how many there were.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(history, dict) or not hasattr(history, "__len__") or len(history) == 0:
        raise ValueError("history must be a non-empty list of per-epoch dicts, e.g. "
                         "[{'epoch': 1, 'train_loss': 180.2, 'val_loss': 175.0}, ...]")
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            raise TypeError(f"history[{i}] is a {type(row).__name__}, expected a dict")
    series = {}
    for key in [f"{split}_{name}" for name, _ in _PANELS for split in ("train", "val")]:
        points = []
        for i, row in enumerate(history):
            value = row.get(key)
            if value is None:
                continue
            if not isinstance(value, numbers.Real):
                raise TypeError(f"history[{i}][{key!r}] is {value!r}, expected a number")
            epoch = row.get("epoch", i + 1)
            if not isinstance(epoch, numbers.Real):
                raise TypeError(f"history[{i}]['epoch'] is {epoch!r}, expected a number")
            points.append((epoch, float(value)))
        if points:
            series[key] = np.array(points)
    if not series:
        raise ValueError("history has none of the keys train_loss, val_loss, train_recon, "
                         "val_recon, train_kl, val_kl; nothing to plot")
    fig = _new_figure((12.0, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (name, label) in zip(axes, _PANELS, strict=True):
        drawn = False
        for split, style in (("train", "-"), ("val", "--")):
            pts = series.get(f"{split}_{name}")
            if pts is None:
                continue
            ok = np.isfinite(pts[:, 1])
            text = "train" if split == "train" else "validation"
            if not ok.all():
                text += f" ({(~ok).sum()} non-finite not shown)"
            ax.plot(pts[ok, 0], pts[ok, 1], style, marker="o" if ok.sum() < 30 else None,
                    markersize=3, label=text)
            drawn = True
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
    return _finish(fig, path)


def latent_scatter(z, labels=None, *, path=None, title=None, label_names=None):
    """Scatter 2-D latent codes, coloured by label.

    Parameters
    ----------
    z : array_like, shape (n, 2)
        Latent codes (for example encoder means). For more dimensions pick two,
        ``z[:, [i, j]]``, or project them first.
    labels : array_like, shape (n,), optional
        Integer, bool or string labels with at most 20 distinct values get a
        legend; anything else (floats, many integers) gets a colorbar.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    title : str, optional
    label_names : sequence or dict, optional
        Legend names for discrete labels: ``label_names[label]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    z = _finite(z, "z")
    if z.ndim != 2 or z.shape[1] != 2 or len(z) == 0:
        raise ValueError(f"z must have shape (n, 2) with n >= 1, got {z.shape}; for more "
                         "latent dimensions pass two columns, z[:, [i, j]]")
    size = float(np.clip(20000 / len(z), 2.0, 25.0))
    fig = _new_figure((7.0, 6.0))
    ax = fig.add_subplot()
    if labels is None:
        if label_names is not None:
            raise ValueError("label_names given without labels")
        ax.scatter(z[:, 0], z[:, 1], s=size, alpha=0.7, linewidths=0)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(z),):
            raise ValueError(f"labels must have shape ({len(z)},) to match z, "
                             f"got {labels.shape}")
        classes = np.unique(labels) if labels.dtype.kind in "biuUS" else None
        if classes is not None and len(classes) <= 20:
            _discrete_scatter(ax, z, labels, classes, label_names, size)
        else:
            if label_names is not None:
                raise ValueError("label_names only applies to discrete labels (integers, "
                                 "bools or strings with at most 20 distinct values)")
            if labels.dtype.kind not in "biuf":
                raise TypeError(f"labels of dtype {labels.dtype} with more than 20 "
                                "distinct values cannot be coloured; pass numbers")
            values = _finite(labels, "labels")
            points = ax.scatter(z[:, 0], z[:, 1], c=values, s=size, alpha=0.8, linewidths=0,
                                cmap="viridis")
            fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title(title or "latent space")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _discrete_scatter(ax, z, labels, classes, label_names, size):
    colors = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"].colors
    for k, cls in enumerate(classes):
        cls = cls.item()  # numpy scalar -> Python int/bool/str
        if label_names is None:
            name = str(cls)
        else:
            try:
                if not isinstance(label_names, dict) and isinstance(cls, int) and cls < 0:
                    raise IndexError(cls)  # a list would silently wrap around
                name = str(label_names[cls])
            except (KeyError, IndexError, TypeError) as exc:
                raise ValueError(f"label_names has no entry for label {cls!r}") from exc
        mask = labels == cls
        ax.scatter(z[mask, 0], z[mask, 1], s=size, alpha=0.7, linewidths=0,
                   color=colors[k % len(colors)], label=name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=max(1.0, 25 / size),
              frameon=False)


# ----------------------------------------------------------------------------- helpers


def _new_figure(figsize):
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=DPI, format="png")
    return fig


def _finite(values, name):
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric: {exc}") from exc
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(bad)}); "
                         "remove or replace those values")
    return arr


def _check_images(images, image_shape, name, clip):
    """Return images as a float array (n, h*w), checked against image_shape."""
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2
            or not all(isinstance(s, numbers.Integral) and s > 0 for s in image_shape)):
        raise ValueError(f"image_shape must be (h, w) with positive ints, got {image_shape!r}")
    h, w = (int(s) for s in image_shape)
    arr = _finite(images, name)
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


def _check_extent(extent, n):
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
