r"""The activation registry: every activation the layers and the kernels know, defined once.

Each class below is the readable definition (plain NumPy) of one activation; the plain
NumPy kernels (:mod:`npvae.kernels._reference`) call it, and the Numba kernels
(:mod:`npvae.kernels._numba`) fuse the same formulas with the bias add and the bias
gradient, one branch per ``code``. Defining a subclass with a ``name`` registers it in
:data:`ACTIVATIONS`: the CLI's choices, the warm-up, the test cases and the kernel tests
are all read from there. The kernels raise on a code they do not implement.

Two kinds of activation, told apart by :attr:`Activation.needs_pre`:

* the derivative is a function of the **output** ``y = f(a)`` (``needs_pre = False``).
  The layer keeps only ``y``, and the forward pass overwrites the pre-activation in place
  (scikit-learn's ``_base.py`` does the same):

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

* the derivative needs the **pre-activation** ``a`` (``needs_pre = True``): ``f`` is not
  monotone, so ``y`` does not determine ``a`` (SiLU's ``y = -0.2`` has two preimages).
  The layer keeps ``a`` in a buffer of its own, for these layers only (no extra GEMM):

  ========== ============================================ =============================
  name       y = f(a)                                     f'(a)
  ========== ============================================ =============================
  silu       a s, s = sigmoid(a)                          s (1 + a (1 - s))
  gelu       a (1 + t) / 2, t = tanh(c (a + k a^3))       (1 + t) / 2
                                                          + a (1 - t^2) c (1 + 3 k a^2) / 2
  ========== ============================================ =============================

  (``c = sqrt(2 / pi)``, ``k = 0.044715``: GELU's tanh form, Hendrycks & Gimpel 2016.)

``derivative(t)`` and ``backward(dy, t)`` take ``t = y`` for the first kind and ``t = a``
for the second; :meth:`Activation.saved` picks it. docs/math.md derives the derivatives.

Codes are fixed for good: the compiled kernels freeze them, and Numba's disk cache is
keyed by the source file of each kernel (the dense kernels are in
:mod:`npvae.kernels._numba_dense`), so a new activation takes a new code (and a branch
there), and no code is ever renumbered.

This module sits below the kernels and imports nothing from npvae;
:mod:`npvae.core.activations` is its public name.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

ACTIVATIONS = {}  # name -> class, in definition order; filled by Activation.__init_subclass__
BY_CODE = {}  # code -> class


class Activation:
    """Base class. A subclass sets ``name`` (which registers it), ``code`` (the kernels'
    switch), ``init``, and :meth:`forward` and :meth:`derivative`.

    ``param`` is the activation's one hyper-parameter (LeakyReLU's slope, ELU's alpha),
    0 where there is none; a class that takes one sets ``has_param = True`` and accepts it
    as its constructor's one argument. ``needs_pre`` says which kind it is (see the module
    docstring).
    """

    name = ""
    code = -1
    init = "glorot"  # the initialisation that keeps activations' variance stable
    param = 0.0
    has_param = False
    needs_pre = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # an abstract helper class: not registered
            return
        for table, key in ((ACTIVATIONS, cls.name), (BY_CODE, cls.code)):
            if key in table and table[key].__qualname__ != cls.__qualname__:
                raise TypeError(f"activation {cls.__name__}: {key!r} is taken by "
                                f"{table[key].__name__}; give it a name and a code of its own")
        if not isinstance(cls.code, int) or cls.code < 0:
            raise TypeError(f"activation {cls.__name__}: code must be an int >= 0")
        ACTIVATIONS[cls.name] = BY_CODE[cls.code] = cls

    def forward(self, a):
        """Return ``y = f(a)`` as a new array."""
        raise NotImplementedError

    def derivative(self, t):
        """Return ``f'(a)`` from ``t``: the output ``y`` (or ``a`` if :attr:`needs_pre`)."""
        raise NotImplementedError

    def saved(self, a, y):
        """What :meth:`derivative` and :meth:`backward` take: ``a`` or ``y``."""
        return a if self.needs_pre else y

    def backward(self, dy, t):
        r"""Gradient with respect to the input: :math:`\partial L/\partial a = dy \odot f'(a)`.

        Parameters
        ----------
        dy : ndarray
            Gradient of the loss with respect to the output ``y``.
        t : ndarray
            ``self.saved(a, y)``: the output of :meth:`forward`, or its input ``a`` for an
            activation that :attr:`needs_pre`.
        """
        return dy * self.derivative(t)

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


class _Parametrised(Activation):
    """An activation with one positive hyper-parameter, ``param``."""

    has_param = True
    param_label = "param"

    def __init__(self, param):
        param = float(param)
        if not param > 0:
            raise ValueError(f"{type(self).__name__} {self.param_label} must be > 0, got "
                             f"{param}")
        self.param = param

    def __repr__(self):
        return f"{type(self).__name__}({self.param_label}={self.param})"


class LeakyReLU(_Parametrised):
    """y = a if a > 0 else slope * a; f' = 1 if y > 0 else slope.

    Parameters
    ----------
    slope : float, default 0.01
        Must be positive, so that the sign of y tells the side of the kink (use ReLU for
        slope 0).
    """

    name, code, init, param_label = "leaky_relu", 2, "he", "slope"

    def __init__(self, slope=0.01):
        super().__init__(slope)

    def forward(self, a):
        return np.where(a > 0, a, self.param * a)

    def derivative(self, y):
        return np.where(y > 0, 1.0, self.param).astype(y.dtype)


class ELU(_Parametrised):
    """y = a if a > 0 else alpha (e^a - 1); f' = 1 if y > 0 else y + alpha.

    Parameters
    ----------
    alpha : float, default 1.0
        Must be positive.
    """

    name, code, init, param_label = "elu", 3, "he", "alpha"

    def __init__(self, alpha=1.0):
        super().__init__(alpha)

    def forward(self, a):
        return np.where(a > 0, a, self.param * np.expm1(np.minimum(a, 0)))

    def derivative(self, y):
        return np.where(y > 0, 1.0, y + self.param).astype(y.dtype)


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


class SiLU(Activation):
    r"""SiLU (swish): :math:`y = a\,\sigma(a)`; :math:`f' = \sigma(a)(1 + a(1 - \sigma(a)))`,
    from the pre-activation (:attr:`needs_pre`)."""

    name, code, init, needs_pre = "silu", 7, "he", True

    def forward(self, a):
        return a * expit(a)

    def derivative(self, a):
        s = expit(a)
        return s * (1 + a * (1 - s))


GELU_C = float(np.sqrt(2 / np.pi))
GELU_K = 0.044715


class GELU(Activation):
    r"""GELU in its tanh form: :math:`y = \tfrac12 a (1 + t)`, :math:`t = \tanh u`,
    :math:`u = c (a + k a^3)`, :math:`c = \sqrt{2/\pi}`, :math:`k = 0.044715`;

    .. math::
        f'(a) = \tfrac12 (1 + t) + \tfrac12 a (1 - t^2)\, c\, (1 + 3 k a^2)

    from the pre-activation (:attr:`needs_pre`)."""

    name, code, init, needs_pre = "gelu", 8, "he", True

    def forward(self, a):
        return 0.5 * a * (1 + np.tanh(GELU_C * (a + GELU_K * a * a * a)))

    def derivative(self, a):
        t = np.tanh(GELU_C * (a + GELU_K * a * a * a))
        return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_C * (1 + 3 * GELU_K * a * a)


def get_activation(spec):
    """Return an :class:`Activation` from a name (``"relu"``), a saved config
    (``{"name": "leaky_relu", "param": 0.2}``, as ``VAEModel.config`` writes an instance)
    or an instance."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, dict) and set(spec) <= {"name", "param"} and "name" in spec:
        cls = _lookup(spec["name"])
        if cls is not None:
            return cls(spec["param"]) if cls.has_param and spec.get("param") else cls()
    if isinstance(spec, str):
        cls = _lookup(spec)
        if cls is not None:
            return cls()
    raise ValueError(
        f"unknown activation {spec!r}; choose one of {', '.join(ACTIVATIONS)} "
        "or pass an npvae.core.activations.Activation instance"
    )


def _lookup(name):
    return ACTIVATIONS.get(name.lower().replace("-", "_")) if isinstance(name, str) else None


def from_code(code, param):
    """Rebuild the activation a kernel call names by ``(code, param)``; ValueError for a
    code no activation has."""
    cls = BY_CODE.get(int(code))
    if cls is None:
        raise ValueError(f"unknown activation code {code!r}; the registered codes are "
                         f"{sorted(BY_CODE)}")
    return cls(param) if cls.has_param else cls()


for _cls in (Activation, *ACTIVATIONS.values()):
    # their public home: pickles name npvae.core.activations (as before the move), and
    # stay loadable wherever the definitions live
    _cls.__module__ = "npvae.core.activations"
del _cls

# every registered class, so that npvae.core.activations re-exports a new one too
__all__ = ["Activation", "ACTIVATIONS", "BY_CODE", "get_activation", "from_code",
           *(cls.__name__ for cls in ACTIVATIONS.values())]
