r"""Activation functions, each with its derivative written in terms of its *output*.

Caching the output y = f(a) rather than the input a is enough for every activation here
(scikit-learn's ``_base.py`` does the same), which saves a buffer per layer and lets the
forward pass overwrite the pre-activation in place:

========== ============================== ==========================================
name       y = f(a)                       f'(a) written with y
========== ============================== ==========================================
identity   a                              1
relu       max(a, 0)                      [y > 0]
leaky_relu a if a > 0 else s a            1 if y > 0 else s          (needs s > 0)
elu        a if a > 0 else al (e^a - 1)   1 if y > 0 else y + al     (needs al > 0)
tanh       tanh a                         1 - y^2
sigmoid    1 / (1 + e^{-a})               y (1 - y)
softplus   log(1 + e^a)                   sigmoid(a) = 1 - e^{-y}
========== ============================== ==========================================

The classes below are the readable reference; the Numba kernels in
:mod:`npvae.kernels` fuse the same formulas with the bias add and the bias gradient.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = [
    "Activation", "Identity", "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "Softplus",
    "ACTIVATIONS", "get_activation",
]


class Activation:
    """Base class. Subclasses set ``name``, ``code`` (the kernels' switch) and ``init``.

    ``param`` is the activation's one hyper-parameter (LeakyReLU's slope, ELU's alpha),
    0 where there is none.
    """

    name = ""
    code = -1
    init = "glorot"  # the initialisation that keeps activations' variance stable
    param = 0.0

    def forward(self, a):
        """Return ``y = f(a)`` as a new array."""
        raise NotImplementedError

    def derivative(self, y):
        """Return ``f'(a)`` computed from the output ``y = f(a)``."""
        raise NotImplementedError

    def backward(self, dy, y):
        r"""Gradient with respect to the input: :math:`\partial L/\partial a = dy \odot f'(a)`.

        Parameters
        ----------
        dy : ndarray
            Gradient of the loss with respect to the output ``y``.
        y : ndarray
            The output of :meth:`forward`.
        """
        return dy * self.derivative(y)

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and self.param == other.param

    def __hash__(self):
        return hash((type(self).__name__, self.param))


class Identity(Activation):
    """y = a; f' = 1. The output layers of the encoder and decoder use it."""

    name, code = "identity", 0

    def forward(self, a):
        return np.array(a, copy=True)

    def derivative(self, y):
        return np.ones_like(y)


class ReLU(Activation):
    """y = max(a, 0); f' = [y > 0] (0 at the kink a = 0, as PyTorch does)."""

    name, code, init = "relu", 1, "he"

    def forward(self, a):
        return np.maximum(a, 0)

    def derivative(self, y):
        return (y > 0).astype(y.dtype)


class LeakyReLU(Activation):
    """y = a if a > 0 else slope * a; f' = 1 if y > 0 else slope.

    Parameters
    ----------
    slope : float, default 0.01
        Must be positive, so that the sign of y tells the side of the kink.
    """

    name, code, init = "leaky_relu", 2, "he"

    def __init__(self, slope=0.01):
        slope = float(slope)
        if not slope > 0:
            raise ValueError(f"LeakyReLU slope must be > 0, got {slope}; use ReLU for slope 0")
        self.param = slope

    def forward(self, a):
        return np.where(a > 0, a, self.param * a)

    def derivative(self, y):
        return np.where(y > 0, 1.0, self.param).astype(y.dtype)

    def __repr__(self):
        return f"LeakyReLU(slope={self.param})"


class ELU(Activation):
    """y = a if a > 0 else alpha (e^a - 1); f' = 1 if y > 0 else y + alpha.

    Parameters
    ----------
    alpha : float, default 1.0
        Must be positive.
    """

    name, code, init = "elu", 3, "he"

    def __init__(self, alpha=1.0):
        alpha = float(alpha)
        if not alpha > 0:
            raise ValueError(f"ELU alpha must be > 0, got {alpha}")
        self.param = alpha

    def forward(self, a):
        return np.where(a > 0, a, self.param * np.expm1(np.minimum(a, 0)))

    def derivative(self, y):
        return np.where(y > 0, 1.0, y + self.param).astype(y.dtype)

    def __repr__(self):
        return f"ELU(alpha={self.param})"


class Tanh(Activation):
    """y = tanh(a); f' = 1 - y^2."""

    name, code = "tanh", 4

    def forward(self, a):
        return np.tanh(a)

    def derivative(self, y):
        return 1 - y * y


class Sigmoid(Activation):
    """y = 1 / (1 + e^{-a}) (``scipy.special.expit``, which never overflows); f' = y (1 - y)."""

    name, code = "sigmoid", 5

    def forward(self, a):
        return expit(a)

    def derivative(self, y):
        return y * (1 - y)


class Softplus(Activation):
    """y = log(1 + e^a) = max(a, 0) + log1p(e^{-|a|}); f' = sigmoid(a) = 1 - e^{-y}.

    The derivative from the output, ``-expm1(-y)``, stays accurate for very negative a,
    where y is tiny.
    """

    name, code, init = "softplus", 6, "he"

    def forward(self, a):
        return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))

    def derivative(self, y):
        return -np.expm1(-y)


ACTIVATIONS = {cls.name: cls for cls in (Identity, ReLU, LeakyReLU, ELU, Tanh, Sigmoid, Softplus)}
BY_CODE = {cls.code: cls for cls in ACTIVATIONS.values()}


def get_activation(spec):
    """Return an :class:`Activation` from a name (``"relu"``) or an instance."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str) and spec.lower().replace("-", "_") in ACTIVATIONS:
        return ACTIVATIONS[spec.lower().replace("-", "_")]()
    raise ValueError(
        f"unknown activation {spec!r}; choose one of {', '.join(ACTIVATIONS)} "
        "or pass an npvae.core.activations.Activation instance"
    )


def from_code(code, param):
    """Rebuild the activation a kernel call names by ``(code, param)``."""
    cls = BY_CODE[int(code)]
    return cls(param) if cls in (LeakyReLU, ELU) else cls()
