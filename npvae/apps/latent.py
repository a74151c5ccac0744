"""Latent-space tools: interpolation (linear or spherical), traversals of one latent
dimension around a point, and 2-D maps of the posterior means (PCA when Z > 2).

Everything works on posterior means ``mu(x) = E_q[z | x]`` and decodes with the mean of
p(x | z); a conditional model takes its metadata ``y`` as in :meth:`npvae.VAE.encode`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["slerp", "lerp", "interpolate", "traverse", "pca", "latent_map", "LatentMap"]


def lerp(a, b, t):
    """Linear interpolation ``(1 - t) a + t b`` for every ``t``: shape (len(t), Z)."""
    a, b, t = _endpoints(a, b, t)
    return (1.0 - t)[:, None] * a + t[:, None] * b


def slerp(a, b, t, *, eps=1e-7):
    r"""Spherical linear interpolation (Shoemake 1985; White 2016 for generative models).

    The direction turns at a constant rate along the great circle from ``a`` to ``b`` and
    the norm moves linearly:

    .. math:: p(t) = \big((1-t)\lVert a\rVert + t\lVert b\rVert\big)
       \Big(\frac{\sin((1-t)\Omega)}{\sin\Omega}\hat a
       + \frac{\sin(t\Omega)}{\sin\Omega}\hat b\Big),
       \qquad \cos\Omega = \hat a \cdot \hat b,

    with :math:`\hat a = a / \lVert a\rVert`. So the angle between ``p(t)`` and ``a`` is
    :math:`t\Omega` and :math:`\lVert p(t)\rVert = (1-t)\lVert a\rVert + t\lVert b\rVert`;
    for endpoints of equal norm this is White's formula (the norm stays constant, so the path
    does not cut through the low-norm middle of a Gaussian prior, where a linear path between
    high-dimensional latents goes). Nearly parallel or zero endpoints
    (:math:`\sin\Omega <` ``eps``) fall back to linear interpolation. ``p(0) = a`` and
    ``p(1) = b`` exactly.

    Parameters
    ----------
    a, b : array_like (Z,)
    t : float or array_like (T,)

    Returns
    -------
    ndarray (T, Z)
    """
    a, b, t = _endpoints(a, b, t)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    so = np.sin(omega)
    if so < eps:
        return lerp(a, b, t)
    direction = (np.sin((1.0 - t) * omega) / so)[:, None] * ua \
        + (np.sin(t * omega) / so)[:, None] * ub
    out = ((1.0 - t) * na + t * nb)[:, None] * direction
    out[t == 0] = a  # exact endpoints
    out[t == 1] = b
    return out


def _endpoints(a, b, t):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"endpoints differ in size: {a.shape} and {b.shape}")
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise ValueError("t must be a finite scalar or 1-D array")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("endpoints contain NaN or inf")
    return a, b, t


def _one(x, model, argname):
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.shape != (1, model.input_dim):
        raise ValueError(f"{argname} must be one example, shape ({model.input_dim},) or "
                         f"(1, {model.input_dim}), got {np.shape(x)}")
    return x


def _cond(y, n):
    if y is None:
        return None
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[None, :]
    if y.shape[0] == 1:
        y = np.repeat(y, n, axis=0)
    return y


def interpolate(model, x_a, x_b, n_steps=10, method="linear", *, y_a=None, y_b=None):
    """Decode a path between the posterior means of two examples.

    Parameters
    ----------
    model : npvae.VAE
    x_a, x_b : array_like (D,) or (1, D)
    n_steps : int, default 10
        Points on the path, endpoints included (``t = linspace(0, 1, n_steps)``).
    method : {"linear", "slerp"}
    y_a, y_b : array_like (C,), optional
        Metadata of a conditional model: encodes ``x_a`` with ``y_a`` and ``x_b`` with
        ``y_b`` (default ``y_a``); along the path ``y`` moves linearly from one to the other.

    Returns
    -------
    z : ndarray (n_steps, Z)
    images : ndarray (n_steps, D)
        ``decode(z)``, the mean of p(x | z).
    """
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    n_steps = int(n_steps)
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2 (the two endpoints), got {n_steps}")
    if (y_a is None) != (model.cond_dim == 0):
        raise ValueError("pass y_a (and optionally y_b) exactly when the model is conditional")
    ya = _cond(y_a, 1)
    yb = ya if y_b is None else _cond(y_b, 1)
    za = model.encode(_one(x_a, model, "x_a"), ya)[0][0]
    zb = model.encode(_one(x_b, model, "x_b"), yb)[0][0]
    t = np.linspace(0.0, 1.0, n_steps)
    z = (slerp if method == "slerp" else lerp)(za, zb, t)
    y = None if ya is None else lerp(ya[0], yb[0], t)
    return z, model.decode(z.astype(model.dtype), y)


def traverse(model, x=None, dims=None, values=None, *, y=None):
    """Vary one latent dimension at a time around a point and decode.

    Parameters
    ----------
    model : npvae.VAE
    x : array_like (D,) or (1, D), optional
        The point is ``mu(x)``; default the prior mean, ``z = 0``.
    dims : int or sequence of int, optional
        Dimensions to traverse; default all ``range(Z)``.
    values : array_like (S,), optional
        Values the dimension takes (the others stay at the point's); default
        ``linspace(-3, 3, 9)``, +-3 prior standard deviations.
    y : array_like (C,), optional
        Metadata of a conditional model (used to encode ``x`` and to decode).

    Returns
    -------
    z : ndarray (len(dims) * S, Z)
        Row ``i * S + j`` is the point with dimension ``dims[i]`` set to ``values[j]``: the
        order :func:`npvae.plot.traversal_figure` expects.
    images : ndarray (len(dims) * S, D)
    """
    Z = model.latent_dim
    dims = list(range(Z)) if dims is None else [int(d) for d in np.atleast_1d(dims)]
    for d in dims:
        if not 0 <= d < Z:
            raise ValueError(f"latent dimension {d} is out of range [0, {Z})")
    values = np.linspace(-3.0, 3.0, 9) if values is None else \
        np.atleast_1d(np.asarray(values, dtype=np.float64))
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError("values must be a finite 1-D array")
    if (y is None) != (model.cond_dim == 0):
        raise ValueError("pass y exactly when the model is conditional")
    y1 = _cond(y, 1)
    base = np.zeros(Z) if x is None else model.encode(_one(x, model, "x"), y1)[0][0]
    S = len(values)
    z = np.tile(base.astype(np.float64), (len(dims) * S, 1))
    for i, d in enumerate(dims):
        z[i * S:(i + 1) * S, d] = values
    return z, model.decode(z.astype(model.dtype), _cond(y, len(z)))


def pca(Z, n_components=2):
    """Principal component analysis by SVD of the centred data (no new dependency).

    Parameters
    ----------
    Z : array_like (N, K)
    n_components : int, default 2

    Returns
    -------
    coords : ndarray (N, n_components)
        ``(Z - mean) @ components.T``.
    components : ndarray (n_components, K)
        Orthonormal rows, by decreasing variance; signs fixed so that each row's entry of
        largest magnitude is positive (deterministic output).
    explained_variance_ratio : ndarray (n_components,)
    mean : ndarray (K,)
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or len(Z) < 2:
        raise ValueError(f"Z must have shape (N, K) with N >= 2, got {Z.shape}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN or inf")
    k = int(n_components)
    if not 1 <= k <= min(Z.shape):
        raise ValueError(f"n_components must lie in [1, {min(Z.shape)}], got {n_components}")
    mean = Z.mean(axis=0)
    C = Z - mean
    _, s, vt = np.linalg.svd(C, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s ** 2
    total = var.sum()
    ratio = var[:k] / total if total > 0 else np.zeros(k)
    return C @ comps.T, comps, ratio, mean


@dataclass
class LatentMap:
    """Result of :func:`latent_map`.

    Attributes
    ----------
    coords : ndarray (N, 2)
    method : str
        ``"latent"`` (Z = 2: the posterior means themselves) or ``"pca"``.
    explained_variance_ratio : ndarray (2,) or None
        Share of the posterior means' variance on each axis (PCA only).
    figure : matplotlib.figure.Figure or None
        Drawn when ``labels`` or ``path`` was given.
    """

    coords: np.ndarray
    method: str
    explained_variance_ratio: np.ndarray | None = None
    figure: object = None


def latent_map(model, X, y=None, *, labels=None, path=None, title=None, label_names=None):
    """2-D coordinates of ``X`` in latent space, optionally drawn coloured by label.

    The coordinates are the posterior means themselves when ``Z = 2``, else their first two
    principal components (:func:`pca`).

    Parameters
    ----------
    model : npvae.VAE
    X : array_like (N, D)
    y : array_like (N, C), optional
        Metadata of a conditional model.
    labels : array_like (N,), optional
        Colours of the points (see :func:`npvae.plot.latent_scatter`).
    path : str or PathLike, optional
        Save the figure as a PNG here.
    title, label_names : optional
        Passed to :func:`npvae.plot.latent_scatter`.

    Returns
    -------
    LatentMap
    """
    mu = model.encode(X, y)[0].astype(np.float64)
    if mu.shape[1] == 2:
        coords, method, ratio, axes = mu, "latent", None, ("z0", "z1")
    elif mu.shape[1] == 1:
        coords, method, ratio, axes = np.column_stack([mu[:, 0], np.zeros(len(mu))]), \
            "latent", None, ("z0", "")
    else:
        coords, _, ratio, _ = pca(mu, 2)
        method = "pca"
        axes = tuple(f"PC{i + 1} of the posterior means ({100 * r:.0f}% of variance)"
                     for i, r in enumerate(ratio))
    fig = None
    if labels is not None or path is not None:
        from npvae.plot import latent_scatter  # matplotlib only when a figure is asked for

        fig = latent_scatter(coords, labels, title=title, label_names=label_names)
        ax = fig.axes[0]
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
        if path is not None:
            fig.savefig(path, dpi=fig.dpi, format="png")
    return LatentMap(coords=coords, method=method, explained_variance_ratio=ratio, figure=fig)
