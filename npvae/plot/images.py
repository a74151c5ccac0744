"""Image figures: grids, reconstructions, latent traversals, the 2-D latent manifold."""

import math

import numpy as np

from npvae.core.checks import positive_int
from npvae.plot._figure import CMAP as _CMAP
from npvae.plot._figure import check_extent as _check_extent
from npvae.plot._figure import check_images as _check_images
from npvae.plot._figure import finish as _finish
from npvae.plot._figure import finite as _finite
from npvae.plot._figure import new_figure as _new_figure

__all__ = ["image_grid", "manifold_figure", "manifold_latents", "reconstruction_figure",
           "traversal_figure"]

_GAP = 1  # pixels between tiles


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


