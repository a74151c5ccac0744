"""Numba kernels of the dense layers: the bias add fused with the activation, forward
(``bias_act``, ``bias_act_pre``) and backward (``act_backward``); the twins of
:mod:`npvae.kernels._reference`'s, one branch per registered activation."""

from __future__ import annotations

import numpy as np
from numba import njit

from npvae.kernels import activations as _acts
from npvae.kernels._jit import _OPTS, _parts, _probe, inline

# The activation codes, read from the registry (npvae.kernels.activations). Every code
# there needs a branch in _act and _dact; a code without one raises (tests/test_registry.py
# compares every registered activation's kernels with its definition).
_IDENTITY, _RELU, _LEAKY_RELU, _ELU, _TANH, _SIGMOID, _SOFTPLUS, _SILU, _GELU = (
    _acts.ACTIVATIONS[name].code for name in (
        "identity", "relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "silu", "gelu"))
_GELU_C, _GELU_K = _acts.GELU_C, _acts.GELU_K


@inline
def _sigmoid1(a, zero, one):
    """sigmoid(a) of one value, without overflow."""
    if a >= zero:
        return one / (one + np.exp(-a))
    e = np.exp(a)
    return e / (one + e)


@inline
def _gelu_tanh(a):
    dt = type(a)
    return np.tanh(dt(_GELU_C) * (a + dt(_GELU_K) * a * a * a))


@inline
def _act(a, code, param, zero, one):
    if code == _RELU:
        return a if a > zero else zero
    if code == _IDENTITY:
        return a
    if code == _LEAKY_RELU:
        return a if a > zero else param * a
    if code == _ELU:
        return a if a > zero else param * np.expm1(a)
    if code == _TANH:
        return np.tanh(a)
    if code == _SIGMOID:
        return _sigmoid1(a, zero, one)
    if code == _SOFTPLUS:
        return max(a, zero) + np.log1p(np.exp(-abs(a)))
    if code == _SILU:
        return a * _sigmoid1(a, zero, one)
    if code == _GELU:
        return type(a)(0.5) * a * (one + _gelu_tanh(a))
    raise ValueError("bias_act: unknown activation code (see npvae.kernels.activations)")


@inline
def _dact(t, code, param, zero, one):
    """f'(a) from t: the output y, or the pre-activation a for an activation that needs it."""
    if code == _RELU:
        return one if t > zero else zero
    if code == _IDENTITY:
        return one
    if code == _LEAKY_RELU:
        return one if t > zero else param
    if code == _ELU:
        return one if t > zero else t + param
    if code == _TANH:
        return one - t * t
    if code == _SIGMOID:
        return t * (one - t)
    if code == _SOFTPLUS:
        return -np.expm1(-t)
    if code == _SILU:
        sg = _sigmoid1(t, zero, one)
        return sg * (one + t * (one - sg))
    if code == _GELU:
        dt, th = type(t), _gelu_tanh(t)
        half = dt(0.5)
        return half * (one + th) + half * t * (one - th * th) * dt(_GELU_C) * (
            one + dt(3 * _GELU_K) * t * t)
    raise ValueError("act_backward: unknown activation code (see npvae.kernels.activations)")


# ----------------------------------------------------------------------------- dense layers
@njit(**_OPTS)
def bias_act(y, b, code, param):
    dt = y.dtype.type
    zero, one, prm = dt(0), dt(1), dt(param)
    n, h = y.shape
    if code == _RELU:  # ReLU and identity, the common cases, without the switch in the loop
        for i in range(n):
            for j in range(h):
                a = y[i, j] + b[j]
                y[i, j] = a if a > zero else zero
    elif code == _IDENTITY:
        for i in range(n):
            for j in range(h):
                y[i, j] += b[j]
    else:
        for i in range(n):
            for j in range(h):
                y[i, j] = _act(y[i, j] + b[j], code, prm, zero, one)


@njit(**_OPTS)
def bias_act_pre(y, b, code, param, pre):
    dt = y.dtype.type
    zero, one, prm = dt(0), dt(1), dt(param)
    n, h = y.shape
    for i in range(n):
        for j in range(h):
            a = y[i, j] + b[j]
            pre[i, j] = a
            y[i, j] = _act(a, code, prm, zero, one)


@njit(**_OPTS)
def act_backward(dy, y, code, param, db):
    dt = dy.dtype.type
    zero, one, prm = dt(0), dt(1), dt(param)
    n, h = dy.shape
    for j in range(h):
        db[j] = zero
    if code == _RELU:
        for i in range(n):
            for j in range(h):
                g = dy[i, j] if y[i, j] > zero else zero
                dy[i, j] = g
                db[j] += g
    elif code == _IDENTITY:
        for i in range(n):
            for j in range(h):
                db[j] += dy[i, j]
    else:
        for i in range(n):
            for j in range(h):
                g = dy[i, j] * _dact(y[i, j], code, prm, zero, one)
                dy[i, j] = g
                db[j] += g


_probe.separate_cache(globals(), _parts.tag)  # stand-ins compiled in: a cache of their own
