r"""Finite-difference gradient checks you can point at any layer, loss or whole model.

All checks use central differences, :math:`f'(x) \approx (f(x + h) - f(x - h)) / 2h`,
whose error is :math:`O(h^2)` (truncation) plus :math:`O(\varepsilon |f| / h)` (rounding),
so they are meant for **float64**: with ``h = 1e-6`` the rounding term is about
2e-10 |f| and the truncation term about 2e-13 |f'''|. Three tools, from cheapest to most thorough:

* :func:`check_vjp`: the directional test of HIPS/autograd, comparing
  :math:`\langle u, J v\rangle` (two evaluations of ``f``) with :math:`\langle J^\top u,
  v\rangle` (one call of the hand-written backward). Cheap at any size.
* :func:`numerical_vjp`: every coordinate of :math:`J^\top u`, for small inputs.
* :func:`check_model`: the gradient of a model's loss with respect to every entry (or a
  sample of entries from every named block) of its flat parameter buffer. It uses the
  fourth-order central stencil :math:`(f_{-2} - 8 f_{-1} + 8 f_{1} - f_{2}) / 12h`, with
  error :math:`O(h^4)`, so that a step of 1e-3 keeps the rounding term near 3e-13 |f|
  and small gradients of a large loss are still resolved.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rel_error", "numerical_vjp", "check_vjp", "check_model"]


def rel_error(a, b, floor=1e-12):
    r"""Norm-wise relative error :math:`\lVert a - b\rVert / \max(\lVert a\rVert, \lVert b\rVert)`.

    Norm-wise rather than element-wise, so that entries that are zero up to rounding do
    not dominate. ``floor`` guards the division when both are (near) zero.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    den = max(np.linalg.norm(a), np.linalg.norm(b), floor)
    return float(np.linalg.norm(a - b) / den)


def _require_float64(x):
    if np.asarray(x).dtype != np.float64:
        raise TypeError("finite-difference checks need float64 inputs; float32 rounding "
                        "(~1e-7) swamps the differences. Convert with x.astype(np.float64)")


def numerical_vjp(f, x, u, h=1e-6):
    r"""Every coordinate of :math:`J^\top u` by central differences.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray``; it is called with ``x`` modified in place, one entry at a time.
    x : ndarray, float64
        Point of evaluation (restored on return).
    u : ndarray or float
        Cotangent, same shape as ``f(x)`` (1.0 for a scalar ``f``).
    h : float
        Step.

    Returns
    -------
    ndarray, shape of ``x``
        :math:`\partial \langle u, f(x) \rangle / \partial x`.
    """
    _require_float64(x)
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = np.array(f(x), dtype=np.float64, copy=True)
        x[i] = old - h
        fm = np.array(f(x), dtype=np.float64, copy=True)
        x[i] = old
        grad[i] = np.sum((fp - fm) * u) / (2 * h)
    return grad


def check_vjp(f, vjp, x, rng, h=1e-6):
    r"""Directional check of a hand-written backward pass; returns the relative error.

    Draws a direction ``v`` (shape of ``x``) and a cotangent ``u`` (shape of ``f(x)``) and
    compares :math:`\langle u, (f(x + hv) - f(x - hv)) / 2h\rangle` with
    :math:`\langle \mathrm{vjp}(u), v\rangle`.

    Parameters
    ----------
    f : callable ``f(x) -> ndarray``
    vjp : callable ``vjp(u) -> ndarray`` (shape of ``x``), the backward pass at ``x``
    x : ndarray, float64
    rng : numpy.random.Generator
    h : float
    """
    _require_float64(x)
    y = np.asarray(f(x), dtype=np.float64)
    u = rng.standard_normal(y.shape)
    v = rng.standard_normal(np.shape(x))
    exact = float(np.vdot(np.asarray(vjp(u), dtype=np.float64), v))
    numeric = float(np.vdot(u, (np.asarray(f(x + h * v)) - np.asarray(f(x - h * v))) / (2 * h)))
    return abs(exact - numeric) / max(abs(exact) + abs(numeric), 1e-12)


def check_model(model, x, y=None, noise=None, *, per_block=None, h=1e-3, rng=None, **loss_kw):
    r"""Check ``model.loss_and_grad`` against central differences on its flat parameters.

    The noise of the reparameterisation is held fixed (drawn once if not given), so the
    loss is a deterministic function of the parameters.

    Parameters
    ----------
    model : VAEModel
        A float64 model.
    x, y : ndarray
        A batch (and its metadata for a conditional model).
    noise : ndarray (L, N, Z), optional
    per_block : int, optional
        Check this many entries drawn at random from every named parameter block
        (every entry of every block when None).
    h : float, default 1e-3
        Step of the fourth-order stencil.
    rng : numpy.random.Generator, optional
        Draws the noise and the sampled entries.
    **loss_kw
        Passed to ``loss_and_grad`` (``beta=``, ``free_bits=``).

    Returns
    -------
    dict
        Parameter name to the relative error (:func:`rel_error`) of its checked entries.
    """
    p = model.params
    if p is None:
        raise RuntimeError("build the model first (input_dim=...)")
    _require_float64(p.data)
    rng = rng or np.random.default_rng(0)
    n = np.asarray(x).shape[0]
    if noise is None:
        noise = rng.standard_normal((model.n_samples, n, model.latent_dim))

    def loss():
        return model.loss_and_grad(x, y, noise=noise, **loss_kw)[0]

    f0 = loss()
    analytic = p.grad.copy()
    # The stencil cannot resolve a gradient below the rounding noise of the loss, about
    # eps |f| / h; blocks whose gradient is that small (a dead ReLU path: exactly 0) are
    # judged by their absolute error, through the floor of rel_error.
    floor = 1e6 * 10 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / h
    errors = {}
    for name, sl in p.block_slices().items():
        idx = np.arange(sl.start, sl.stop)
        if per_block is not None and len(idx) > per_block:
            idx = rng.choice(idx, size=per_block, replace=False)
        numeric = np.empty(len(idx))
        for k, i in enumerate(idx):
            old = p.data[i]
            f = {}
            for step in (-2, -1, 1, 2):
                p.data[i] = old + step * h
                f[step] = loss()
            p.data[i] = old
            numeric[k] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
        errors[name] = rel_error(analytic[idx], numeric, floor)
    loss()  # leave the gradient buffer as it was
    return errors
