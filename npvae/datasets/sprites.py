"""Procedurally generated 2-D shapes with known generating factors (in the spirit of dSprites).

Every image shows one white shape (a square, an ellipse or a heart) on a black background. The
shape is fixed by five factors: shape, scale, rotation, x position and y position. The images are
rasterised analytically: a pixel is "on" when its centre lies inside the rotated, scaled and
translated shape. There is no anti-aliasing and no image library; everything is vectorised NumPy.

Coordinates
-----------
The image is the unit square ``[0, 1] x [0, 1]``; pixel ``(i, j)`` (row ``i``, column ``j``) has
its centre at ``x = (j + 0.5) / size`` and ``y = (i + 0.5) / size``, with ``y`` growing downwards
like the row index. Each canonical shape fits inside the unit disk. At scale ``s`` it is drawn
with radius ``s * MAX_RADIUS``, rotated counter-clockwise (as seen on screen) by the rotation
angle, and centred at ``MARGIN + x * (1 - 2 * MARGIN)`` (same for ``y``), so every shape stays
inside the image, one pixel clear of the border, at every factor value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npvae.core import checks as chk
from npvae.core.memory import check_memory

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")

MAX_RADIUS = 0.25  # radius of the bounding disk at scale 1, in image widths
ELLIPSE_MINOR = 0.6  # ellipse semi-axes are (1, ELLIPSE_MINOR) in the unit disk
HEART_RADIUS = 1.25  # the heart (x^2+y^2-1)^3 <= x^2 y^3 fits a disk of radius 1.25 ...
HEART_CENTRE = 0.25  # ... centred at (0, 0.25)
_CHUNK = 4096  # images rendered per block, to bound temporary memory


@dataclass(frozen=True, eq=False)
class Sprites:
    """A set of sprite images and the factors that generated them.

    Attributes
    ----------
    images : ndarray of shape (n, size * size)
        Flattened (row-major) binary images, float32 in {0, 1} (or uint8 if asked for).
    factors : ndarray of shape (n, 5), float32
        Factor values: shape index, scale in (0, 1], rotation in radians, x and y in [0, 1].
    factor_classes : ndarray of shape (n, 5), int64
        Index of each factor value in its grid (``factor_values[k][factor_classes[:, k]]``).
    labels : ndarray of shape (n,), int64
        The shape index (``factor_classes[:, 0]``).
    image_shape : tuple of int
        ``(size, size)``.
    factor_values : tuple of ndarray
        The grid of values of each factor.
    factor_names, shape_names : tuple of str
    """

    images: np.ndarray
    factors: np.ndarray
    factor_classes: np.ndarray
    labels: np.ndarray
    image_shape: tuple
    factor_values: tuple
    factor_names: tuple = FACTOR_NAMES
    shape_names: tuple = SHAPE_NAMES

    @property
    def factor_sizes(self):
        """Number of values of each factor, e.g. ``(3, 6, 16, 16, 16)``."""
        return tuple(len(v) for v in self.factor_values)


def factor_grid(*, n_scales=6, n_rotations=16, n_positions=16):
    """Values of each generating factor.

    Parameters
    ----------
    n_scales, n_rotations, n_positions : int
        Number of scale values (evenly spaced in [0.5, 1]), rotations (evenly spaced in
        [0, 2 pi)) and positions per axis (evenly spaced in [0, 1]).

    Returns
    -------
    tuple of ndarray
        ``(shape, scale, rotation, x, y)`` value grids, float32.
    """
    for name, value in (("n_scales", n_scales), ("n_rotations", n_rotations),
                        ("n_positions", n_positions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    scales = np.linspace(0.5, 1.0, n_scales) if n_scales > 1 else np.ones(1)
    rotations = 2.0 * np.pi * np.arange(n_rotations) / n_rotations
    positions = np.linspace(0.0, 1.0, n_positions) if n_positions > 1 else np.full(1, 0.5)
    grid = (np.arange(len(SHAPE_NAMES)), scales, rotations, positions, positions)
    return tuple(v.astype(np.float32) for v in grid)


def make_sprites(n=None, *, size=32, seed=0, replace=False, dtype=np.float32,
                 n_scales=6, n_rotations=16, n_positions=16):
    """Generate sprite images from a grid of factors.

    Parameters
    ----------
    n : int or None
        Number of images. ``None`` returns the whole factor grid once, in C order (the last
        factor, y, varies fastest): 3 * 6 * 16 * 16 * 16 = 73,728 images with the defaults,
        about 300 MB as float32 at 32x32 (use ``dtype=np.uint8`` for a quarter of that).
    size : int
        Image side in pixels (32 or 64 are the usual; anything >= 16 works).
    seed : int or numpy.random.Generator
        Seed of the draw of factor combinations; the same seed gives identical arrays.
    replace : bool
        Draw grid cells with replacement. The default draws distinct cells, so ``n`` may not
        exceed the grid size.
    dtype : {numpy.float32, numpy.float64, numpy.uint8, bool}
        dtype of ``images``.
    n_scales, n_rotations, n_positions : int
        Grid resolution; see :func:`factor_grid`.

    Returns
    -------
    Sprites
    """
    values = factor_grid(n_scales=n_scales, n_rotations=n_rotations, n_positions=n_positions)
    sizes = tuple(len(v) for v in values)
    total = int(np.prod(sizes))
    if n is None:
        flat = np.arange(total)
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer or None, got {n!r}")
        if n > total and not replace:
            raise ValueError(f"n={n} exceeds the {total} distinct factor combinations; "
                             "pass replace=True or ask for fewer images")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        flat = rng.choice(total, size=n, replace=replace)
    classes = np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)
    factors = np.stack([values[k][classes[:, k]] for k in range(5)], axis=1)
    side = chk.positive_int(size, "size")
    check_memory(len(factors) * side * side * (np.dtype(dtype).itemsize + 8),
                 f"{len(factors)} sprites of {side}x{side}", "ask for fewer or smaller images")
    images = render_sprites(factors, size=size, dtype=dtype)
    return Sprites(images=images, factors=factors, factor_classes=classes,
                   labels=classes[:, 0].copy(), image_shape=(size, size), factor_values=values)


def render_sprites(factors, *, size=32, dtype=np.float32):
    """Rasterise shapes from (possibly continuous) factor values.

    Parameters
    ----------
    factors : array_like of shape (n, 5)
        Rows of (shape index in {0, 1, 2}, scale in (0, 1], rotation in radians, x in [0, 1],
        y in [0, 1]). Useful for latent traversals and for disentanglement metrics that fix
        one factor and vary the others.
    size : int
        Image side in pixels, at least 8.
    dtype : {numpy.float32, numpy.float64, numpy.uint8, bool}
        dtype of the result.

    Returns
    -------
    images : ndarray of shape (n, size * size)
        Flattened row-major binary images.

    Notes
    -----
    With centre ``c``, radius ``r`` and angle ``theta``, a pixel centre ``p`` maps to the shape's
    frame by ``(u, v) = R(-theta) (p_x - c_x, c_y - p_y) / r`` (the y flip makes "up" point up on
    screen). The pixel is on when

    - square: ``max(|u|, |v|) <= 1 / sqrt(2)``,
    - ellipse: ``u^2 + (v / 0.6)^2 <= 1``,
    - heart: ``(X^2 + Y^2 - 1)^3 <= X^2 Y^3`` with ``X = 1.25 u``, ``Y = 1.25 v + 0.25``.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 2 or factors.shape[1] != 5:
        raise ValueError(f"factors must have shape (n, 5) with columns {FACTOR_NAMES}, "
                         f"got shape {factors.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (32 or 64 are usual), got {size!r}")
    _check_factors(factors)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64, np.uint8, np.bool_):
        raise TypeError(f"dtype must be float32, float64, uint8 or bool, got {dtype}")
    n = factors.shape[0]
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    px = np.tile(centres, size)  # (P,) column coordinate of each flattened pixel
    py = np.repeat(centres, size)  # (P,) row coordinate
    margin = MAX_RADIUS + 1.0 / size
    out = np.zeros((n, size * size), dtype=dtype)
    for start in range(0, n, _CHUNK):
        block = factors[start:start + _CHUNK]
        out[start:start + _CHUNK] = _render_block(block, px, py, margin)
    return out


def _check_factors(factors):
    shape = factors[:, 0]
    if not np.all(np.isfinite(factors)):
        raise ValueError("factors contain NaN or inf")
    if not np.all(np.isin(shape, np.arange(len(SHAPE_NAMES)))):
        raise ValueError(f"factor 'shape' must be 0, 1 or 2 ({', '.join(SHAPE_NAMES)})")
    scale = factors[:, 1]
    if np.any(scale <= 0) or np.any(scale > 1):
        raise ValueError("factor 'scale' must lie in (0, 1]; larger shapes could leave the image")
    pos = factors[:, 3:5]
    if np.any(pos < 0) or np.any(pos > 1):
        raise ValueError("factors 'x' and 'y' must lie in [0, 1] (0 = left/top, 1 = right/bottom)")


def _render_block(block, px, py, margin):
    """Render a block of images as a boolean array of shape (m, P)."""
    shape = block[:, 0].astype(np.int64)
    radius = (block[:, 1] * MAX_RADIUS).astype(np.float32)[:, None]  # (m, 1)
    cos = np.cos(block[:, 2]).astype(np.float32)[:, None]
    sin = np.sin(block[:, 2]).astype(np.float32)[:, None]
    cx = (margin + block[:, 3] * (1.0 - 2.0 * margin)).astype(np.float32)[:, None]
    cy = (margin + block[:, 4] * (1.0 - 2.0 * margin)).astype(np.float32)[:, None]
    dx = (px[None, :] - cx) / radius  # (m, P)
    dy = (cy - py[None, :]) / radius  # (m, P), pointing up on screen
    u = dx * cos + dy * sin
    v = dy * cos - dx * sin
    inside = np.empty(u.shape, dtype=bool)
    for k, test in enumerate((_in_square, _in_ellipse, _in_heart)):
        rows = np.flatnonzero(shape == k)
        if rows.size:
            inside[rows] = test(u[rows], v[rows])
    return inside


def _in_square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= np.float32(1.0 / np.sqrt(2.0))


def _in_ellipse(u, v):
    w = v / np.float32(ELLIPSE_MINOR)
    return u * u + w * w <= 1.0


def _in_heart(u, v):
    x = u * np.float32(HEART_RADIUS)
    y = v * np.float32(HEART_RADIUS) + np.float32(HEART_CENTRE)
    x2 = x * x
    t = x2 + y * y - 1.0
    return t * t * t <= x2 * y * y * y
