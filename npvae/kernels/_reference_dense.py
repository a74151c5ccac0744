"""Plain-NumPy reference kernels of the dense layers: the GEMM (``matmul``) and the
bias add fused with the activation, forward (``bias_act``, ``bias_act_pre``) and
backward (``act_backward``); the spec of :mod:`npvae.kernels._numba_dense`."""

from __future__ import annotations

import numpy as np

from npvae.kernels.activations import from_code


def matmul(a, b, out):
    """``out = a @ b`` through NumPy's BLAS, for 2-D ``a`` (M, K), ``b`` (K, N) and a
    C-contiguous ``out`` (M, N) of the same dtype; returns ``out``.

    ``np.dot`` rather than ``np.matmul``: matmul does not hand products with an inner
    dimension of 1 (a batch-1 weight gradient ``x.T @ dy``) to BLAS, and was about 7x
    slower on them.
    """
    return np.dot(a, b, out=out)


def bias_act(y, b, code, param):
    """In place: ``y <- f(y + b)``, the bias add and activation of a Dense layer.

    Parameters
    ----------
    y : ndarray (N, H)
        The GEMM output ``x @ W``; overwritten with the layer output.
    b : ndarray (H,)
    code, param : int, float
        The activation (see :mod:`npvae.core.activations`).
    """
    y += b
    y[...] = from_code(code, param).forward(y)


def bias_act_pre(y, b, code, param, pre):
    """:func:`bias_act` that also keeps the pre-activation: ``pre <- y + b`` (written),
    then ``y <- f(pre)``. For the activations whose derivative needs it (``needs_pre``)."""
    pre[...] = y + b
    y[...] = from_code(code, param).forward(pre)


def act_backward(dy, y, code, param, db):
    r"""In place: ``dy <- dy * f'(a)``, and ``db = sum_n dy``.

    ``f'(a)`` is computed from ``y``: the layer's output, or its pre-activation ``a`` for
    an activation that ``needs_pre`` (see :mod:`npvae.kernels.activations`). This is the
    activation backward fused with the bias gradient of the same layer:
    :math:`\partial L/\partial b_h = \sum_n \partial L/\partial a_{nh}`.
    """
    dy *= from_code(code, param).derivative(y)
    db[...] = dy.sum(axis=0)
