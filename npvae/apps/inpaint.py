"""In-painting: fill the pixels a mask marks missing, keeping the observed ones fixed.

The VAE is used as a learned prior over whole images. Starting from a guess for the
missing pixels (0.5, or the mean image), repeat::

    x_hat = decode(E_q[z | x])          # the model's reconstruction of the current image
    x[missing] = x_hat[missing]         # observed pixels are never touched

Each round moves the missing part towards what the model thinks goes with the observed
part (Rezende et al. 2014, section 5.2, iterate the encoder/decoder pair on the missing
values). With ``rng`` the latent is sampled, ``z ~ q(z | x)``, instead of taken at its
mean: a stochastic, Gibbs-like chain that draws one plausible completion per run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["inpaint", "inpaint_report", "half_mask", "random_mask"]


def _mask(mask, shape):
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be a boolean array (True = missing), got dtype {m.dtype}")
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask of shape {m.shape} does not broadcast to X's shape {shape}; "
                         "pass (D,) for one mask for all rows or (N, D)") from None


def _data(X, model):
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != model.input_dim:
        raise ValueError(f"X must have shape (n, {model.input_dim}), got {X.shape}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    return X


def inpaint(model, X, mask, *, n_iter=50, y=None, init=0.5, rng=None):
    """Fill the entries of ``X`` where ``mask`` is True with the model's completion.

    Parameters
    ----------
    model : npvae.VAE
    X : array_like (N, D)
        Images; the values under the mask are ignored (they may be anything finite).
    mask : bool array, (N, D) or (D,)
        True where a value is missing.
    n_iter : int, default 50
        Encode/decode rounds.
    y : array_like (N, C), optional
        Metadata of a conditional model.
    init : float or array_like (D,) or (N, D), default 0.5
        Starting value of the missing entries, e.g. the training set's mean image.
    rng : numpy.random.Generator or int, optional
        None: deterministic, ``z = E_q[z | x]``. Given: ``z ~ q(z | x)`` every round.

    Returns
    -------
    ndarray (N, D)
        A copy of ``X`` (its float dtype) whose observed entries are exactly those of ``X``
        and whose missing entries are the model's.
    """
    X = _data(X, model)
    m = _mask(mask, X.shape)
    n_iter = int(n_iter)
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    out = X.copy()
    start = np.broadcast_to(np.asarray(init, dtype=out.dtype), out.shape)
    out[m] = start[m]
    if not np.all(np.isfinite(out)):
        raise ValueError("X (outside the mask) or init contains NaN or inf")
    if rng is not None and not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    for _ in range(n_iter):
        mu, logvar = model.encode(out, y)
        if rng is not None:
            mu = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape).astype(mu.dtype)
        xhat = model.decode(mu, y)
        out[m] = xhat[m]
    return out


def _errors(pred, truth, m):
    p = pred[m].astype(np.float64)
    t = truth[m].astype(np.float64)
    mse = float(np.mean((p - t) ** 2))
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    bce = float(np.mean(-(t * np.log(pc) + (1 - t) * np.log1p(-pc))))
    return mse, bce


def inpaint_report(model, X, mask, *, mean_image, n_iter=50, y=None, init=None, rng=None):
    """In-paint ``X`` and score the missing entries against the truth, next to a baseline
    that fills them with the mean image.

    Parameters
    ----------
    model, X, mask, n_iter, y, rng
        As :func:`inpaint`; ``X`` holds the true values under the mask.
    mean_image : array_like (D,)
        Usually ``X_train.mean(axis=0)``: the baseline's guess for every missing entry.
    init : float or array_like, optional
        Starting value of the missing entries; default ``mean_image``.

    Returns
    -------
    dict
        ``mse`` and ``bce`` of the in-painted entries, ``baseline_mse`` and ``baseline_bce``
        of the mean image, each averaged over the missing entries only (BCE, in nats per
        entry, clips predictions to [1e-6, 1 - 1e-6]; it is meaningful for data in
        [0, 1]); ``n_missing``; and ``filled``, the in-painted images.
    """
    X = _data(X, model)
    m = _mask(mask, X.shape)
    if not m.any():
        raise ValueError("the mask marks nothing missing; there is nothing to score")
    mean_image = np.asarray(mean_image, dtype=np.float64)
    if mean_image.shape != (X.shape[1],):
        raise ValueError(f"mean_image must have shape ({X.shape[1]},), got {mean_image.shape}")
    filled = inpaint(model, X, m, n_iter=n_iter, y=y,
                     init=mean_image if init is None else init, rng=rng)
    mse, bce = _errors(filled, X, m)
    base_mse, base_bce = _errors(np.broadcast_to(mean_image, X.shape), X, m)
    return {"mse": mse, "bce": bce, "baseline_mse": base_mse, "baseline_bce": base_bce,
            "n_missing": int(m.sum()), "filled": filled}


def half_mask(image_shape, side="right"):
    """A (h * w,) boolean mask that marks one half of an image missing.

    ``side`` is ``"right"``, ``"left"``, ``"top"`` or ``"bottom"``.
    """
    h, w = (int(s) for s in image_shape)
    m = np.zeros((h, w), dtype=bool)
    if side == "right":
        m[:, w // 2:] = True
    elif side == "left":
        m[:, :w - w // 2] = True
    elif side == "bottom":
        m[h // 2:] = True
    elif side == "top":
        m[:h - h // 2] = True
    else:
        raise ValueError(f"side must be 'right', 'left', 'top' or 'bottom', got {side!r}")
    return m.ravel()


def random_mask(shape, fraction, rng=None):
    """A boolean mask of ``shape`` with each entry missing (True) with probability
    ``fraction``."""
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return rng.random(shape) < fraction
