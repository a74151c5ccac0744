"""Plain-NumPy reference kernels of the optimizers: Adam (flat, and on a weight matrix
whose gradient is a product), SGD and the squared norm for clipping; the spec of
:mod:`npvae.kernels._numba_optim`."""

from __future__ import annotations

import numpy as np

from npvae.kernels._floats import flush_limits


def adam_step(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    r"""One Adam step in PyTorch's form, in place, over flat buffers.

    .. math::
        g &\leftarrow s\,g \quad (s = \text{gscale}, \text{ from gradient clipping}) \\
        p &\leftarrow p (1 - \eta \lambda) \quad (\text{decoupled weight decay, AdamW}) \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \eta \, \frac{m / b_1}{\sqrt{v / b_2} + \epsilon}, \quad
        b_1 = 1 - \beta_1^t, \; b_2 = 1 - \beta_2^t

    Subnormal numbers are flushed (see :func:`flush_limits`): gradient entries too small
    for :math:`(1 - \beta_2) g^2` to be a normal number count as 0, and ``m``, ``v`` entries
    below ``tiny`` are stored as 0. Such entries move a parameter by less than
    :math:`\eta\,10^{-10}`.
    """
    tiny, _ = flush_limits(p.dtype)
    gs = gscale * g
    gs = np.where(np.abs(gs) >= np.sqrt(tiny / (1.0 - beta2)) if beta2 < 1 else tiny, gs, 0)
    if weight_decay:
        p *= 1.0 - lr * weight_decay
    m *= beta1
    m += (1.0 - beta1) * gs
    v *= beta2
    v += (1.0 - beta2) * gs * gs
    m[np.abs(m) < tiny] = 0
    v[v < tiny] = 0
    p -= lr * (m / bc1) / (np.sqrt(v / bc2) + eps)


def adam_step_outer(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    r"""Adam step for a weight matrix whose gradient is the product :math:`x^\top \delta`.

    The same update as :func:`adam_step` with ``g = x.T @ delta`` (shapes: ``w, m, v``
    (in, out); ``x`` (N, in); ``delta`` (N, out)), but the gradient is never stored: for a
    small batch, forming it costs more memory traffic than the update itself.
    """
    adam_step(w.reshape(-1), (x.T @ delta).reshape(-1), m.reshape(-1), v.reshape(-1), lr,
              beta1, beta2, eps, bc1, bc2, weight_decay, 1.0)


def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first, gscale):
    r"""One SGD step with (optionally Nesterov) momentum, PyTorch's form, in place.

    .. math::
        d = s\,g + \lambda p, \quad
        b \leftarrow d \text{ (first step) else } \mu b + d, \quad
        p \leftarrow p - \eta\,(d + \mu b \text{ if Nesterov else } b)
    """
    d = gscale * g + weight_decay * p
    if momentum:
        if first:
            buf[...] = d
        else:
            buf *= momentum
            buf += d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def sum_squares(g):
    """Return ``sum(g**2)`` as a Python float, accumulated in float64."""
    return float(np.dot(g.astype(np.float64), g.astype(np.float64)))
