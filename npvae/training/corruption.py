"""Corruptions of the encoder's input for de-noising VAEs.

A de-noising VAE (Im et al. 2017) encodes a corrupted copy ``x~`` of each example and is
scored on how well it reconstructs the clean ``x``: the loss is ``-E log p(x | z)`` with
``z ~ q(z | x~)``. :meth:`npvae.VAE.fit` draws a fresh corruption of every batch when given
``corruption=...``; :meth:`npvae.VAE.denoise` is then ``decode(encode_mean(x~))``.

Kinds (``level`` is the strength):

* ``"mask"``: each value is set to 0 with probability ``level`` (Bernoulli masking).
* ``"salt-pepper"``: each value is replaced with probability ``level``, by 0 or by 1 with
  equal odds (for data in [0, 1]).
* ``"gaussian"``: ``x + level * N(0, 1)``, not clipped (the encoder accepts any finite input).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CORRUPTIONS", "corrupt", "check_corruption"]

CORRUPTIONS = ("mask", "salt-pepper", "gaussian")


def check_corruption(kind, level):
    """Validate ``(kind, level)``; return them normalised (``level`` as a float)."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {', '.join(map(repr, CORRUPTIONS))} "
                         f"(or None), got {kind!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise TypeError(f"corruption_level must be a number, got {level!r}")
    level = float(level)
    if not np.isfinite(level) or level < 0:
        raise ValueError(f"corruption_level must be finite and >= 0, got {level!r}")
    if kind != "gaussian" and level > 1:
        raise ValueError(f"corruption_level is a probability for {kind!r} and must lie in "
                         f"[0, 1], got {level!r}")
    return kind, level


def corrupt(X, kind, level, rng=None, *, out=None):
    """Return a corrupted copy of ``X`` (see the module docstring for the kinds).

    Parameters
    ----------
    X : array_like (N, D)
    kind : {"mask", "salt-pepper", "gaussian"}
    level : float
        Probability of corrupting a value (``"mask"``, ``"salt-pepper"``) or the standard
        deviation of the added noise (``"gaussian"``).
    rng : numpy.random.Generator or int, optional
        The source of the corruption; one uniform (or normal) draw per value of ``X``.
    out : ndarray, optional
        Written in place (same shape as ``X``, floating dtype) and returned; may not be ``X``.

    Returns
    -------
    ndarray, the dtype of ``X`` (float64 for integer input) unless ``out`` is given.
    """
    kind, level = check_corruption(kind, level)
    X = np.asarray(X)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    if out is None:
        out = np.empty_like(X)
    elif out.shape != X.shape or out.dtype.kind != "f":
        raise ValueError(f"out must be a float array of shape {X.shape}, got "
                         f"{out.dtype} {out.shape}")
    if np.shares_memory(out, X):
        raise ValueError("out must not share memory with X")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    dt = out.dtype if out.dtype in (np.float32, np.float64) else np.float64
    if kind == "gaussian":
        noise = rng.standard_normal(X.shape, dtype=dt)
        np.multiply(noise, level, out=out, casting="unsafe")
        out += X
        return out
    u = rng.random(X.shape, dtype=dt)
    out[...] = X
    if kind == "mask":
        out[u < level] = 0
    else:
        out[u < 0.5 * level] = 0
        out[(u >= 0.5 * level) & (u < level)] = 1
    return out
