r"""The classifier q(y | x): an MLP with a softmax output, and the backward of the three
functions of its class probabilities that the semi-supervised M2 bound needs.

With logits :math:`s` (one row per example, K classes), :math:`\log q = s -
\operatorname{logsumexp}(s)`, and for one row (``docs/math.md``, section 10):

=========================== ===================================== =============================
function                    value                                 gradient w.r.t. the logits
=========================== ===================================== =============================
cross-entropy               :math:`-\log q_y`                     :math:`q - e_y`
entropy                     :math:`H = -\sum_k q_k \log q_k`      :math:`-q \odot (\log q + H)`
expectation of a fixed E    :math:`F = \sum_k q_k E_k`            :math:`q \odot (E - F)`
=========================== ===================================== =============================

:class:`Classifier` is the network as a part of a larger model (it binds into that model's
:class:`~npvae.core.params.ParamBuffer`); :class:`ClassifierModel` is a stand-alone classifier
with its own buffer and loss (the supervised baseline, and with no hidden layer the
multinomial logistic regression on a VAE's latent means).
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.core.layers import MLP
from npvae.core.params import ParamBuffer
from npvae.kernels import get_kernels

__all__ = ["log_softmax", "cross_entropy_grad", "entropy_grad", "expectation_grad",
           "Classifier", "ClassifierModel", "check_labels"]


def log_softmax(logits):
    r"""Row-wise :math:`\log q = s - \max s - \log\sum_k e^{s_k - \max s}`: never overflows,
    and never takes the log of a rounded-to-zero probability."""
    s = logits - logits.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def cross_entropy_grad(logq, labels):
    r"""Per-row cross-entropy :math:`-\log q_{y}` and its gradient :math:`q - e_y` w.r.t. the
    logits (softmax and cross-entropy backward in one: the Jacobian of the softmax, applied to
    :math:`-e_y / q`, collapses to this difference).

    Parameters
    ----------
    logq : ndarray (N, K)
        :func:`log_softmax` of the logits.
    labels : ndarray (N,) of int
        Classes in ``[0, K)``.

    Returns
    -------
    ce : ndarray (N,)
    dlogits : ndarray (N, K)
    """
    rows = np.arange(len(labels))
    d = np.exp(logq)
    d[rows, labels] -= 1
    return -logq[rows, labels], d


def entropy_grad(logq):
    r"""Per-row entropy :math:`H = -\sum_k q_k \log q_k` and its gradient w.r.t. the logits,
    :math:`\partial H / \partial s_j = -q_j (\log q_j + H)`.

    Returns ``(H (N,), dH (N, K))``.
    """
    q = np.exp(logq)
    h = -(q * logq).sum(axis=1)
    return h, -q * (logq + h[:, None])


def expectation_grad(logq, values):
    r"""Per-row :math:`F = \sum_k q_k E_k` of values ``E`` (N, K) that do not depend on the
    logits, and its gradient w.r.t. the logits, :math:`\partial F/\partial s_j = q_j (E_j - F)`.

    Returns ``(F (N,), dF (N, K))``.
    """
    q = np.exp(logq)
    f = (q * values).sum(axis=1)
    return f, q * (values - f[:, None])


def check_labels(y, n, n_classes, argname="y", *, unlabelled=True):
    """Return ``y`` as int64 (n,) in ``[0, n_classes)`` (and -1 for unlabelled rows when
    ``unlabelled``), or raise ValueError naming the problem."""
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{argname} must hold one class label per row, shape ({n},); got "
                         f"shape {a.shape}")
    if a.size and not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                or not np.all(a == np.round(a)):
            raise ValueError(f"{argname} must hold integer class labels (-1 for unlabelled)")
    a = a.astype(np.int64)
    lo = -1 if unlabelled else 0
    bad = (a < lo) | (a >= n_classes)
    if bad.any():
        what = "-1 (unlabelled) or " if unlabelled else ""
        raise ValueError(f"{argname} must be {what}a class in [0, {n_classes}); found "
                         f"{int(a[bad][0])} at row {int(np.argmax(bad))}")
    return a


class Classifier:
    """The network of q(y | x): an MLP whose last layer emits K logits.

    Parameters
    ----------
    n_in, n_classes : int
    hidden : sequence of int
    activation : str or Activation
    name : str, default "classifier"
        Parameter prefix (``classifier.0.W``, ..., ``classifier.out.b``).
    """

    def __init__(self, n_in, n_classes, hidden, activation="relu", name="classifier"):
        self.n_classes = chk.positive_int(n_classes, "n_classes", minimum=2)
        self.mlp = MLP([int(n_in), *hidden, self.n_classes], activation, name=name)

    def param_shapes(self):
        return self.mlp.param_shapes()

    def bind(self, params):
        self.mlp.bind(params)

    def initialize(self, rng, scheme="auto"):
        self.mlp.initialize(rng, scheme)

    def workspace(self, n, dtype):
        return self.mlp.workspace(n, dtype)

    def forward(self, x, ws, kernels=None):
        """Logits (N, K), written into the workspace."""
        return self.mlp.forward(x, ws, kernels)

    def backward(self, dlogits, x, ws, kernels=None):
        """Write every ``classifier.*`` gradient from ``dlogits`` (N, K), overwritten; the
        input gradient is not formed (x is data)."""
        self.mlp.backward(dlogits, x, ws, need_dx=False, kernels=kernels)

    def log_proba(self, x, kernels=None, batch=1024):
        """``log q(y | x)``, shape (N, K), in batches of ``batch`` rows."""
        out = np.empty((x.shape[0], self.n_classes), dtype=x.dtype)
        for start in range(0, x.shape[0], batch):
            xb = x[start:start + batch]
            out[start:start + batch] = log_softmax(
                self.forward(xb, self.workspace(len(xb), x.dtype), kernels))
        return out


class ClassifierModel:
    r"""A stand-alone softmax classifier: :class:`Classifier` with its own parameter buffer.

    ``loss_and_grad`` is the weighted mean cross-entropy plus an L2 penalty on the weights
    (not the biases), :math:`\sum_n w_n (-\log q_{y_n}(x_n)) + \tfrac{\lambda}{2}
    \sum \lVert W\rVert^2`. With ``hidden=()`` it is multinomial logistic regression.

    Parameters
    ----------
    input_dim, n_classes : int
    hidden : sequence of int, default (500,)
    activation : str, default "relu"
    l2 : float, default 0
        :math:`\lambda`.
    dtype, init, seed, backend
        As for :class:`~npvae.core.model.VAEModel`.
    """

    def __init__(self, input_dim, n_classes, hidden=(500,), *, activation="relu", l2=0.0,
                 dtype="float32", init="auto", seed=0, backend=None):
        self.input_dim = chk.positive_int(input_dim, "input_dim")
        self.hidden = tuple(chk.positive_int(h, "every entry of hidden") for h in hidden)
        self.activation = activation
        self.l2 = chk.nonnegative_float(l2, "l2")
        self.dtype = chk.float_dtype(dtype)
        self.seed = chk.positive_int(seed, "seed", minimum=0)
        self.kernels = get_kernels(backend)
        self.net = Classifier(self.input_dim, n_classes, self.hidden, activation)
        self.n_classes = self.net.n_classes
        self.params = ParamBuffer(self.net.param_shapes(), self.dtype)
        self.net.bind(self.params)
        self.net.initialize(np.random.default_rng([self.seed, 0]), init)
        self._weights = [layer.W for layer in self.net.mlp.layers]
        self._dweights = [layer.dW for layer in self.net.mlp.layers]

    def loss_and_grad(self, x, labels, sample_weight=None):
        """Return the loss (see the class docstring) and write its gradient into
        ``params.grad``. ``sample_weight`` defaults to ``1/N`` (the mean)."""
        x = chk.as_data(x, self.dtype, "x", dim=self.input_dim)
        n = x.shape[0]
        labels = check_labels(labels, n, self.n_classes, "labels", unlabelled=False)
        w = np.full(n, 1.0 / n) if sample_weight is None else np.asarray(sample_weight)
        ws = self.net.workspace(n, self.dtype)
        logq = log_softmax(self.net.forward(x, ws, self.kernels))
        ce, d = cross_entropy_grad(logq, labels)
        self.net.backward((w[:, None] * d).astype(self.dtype), x, ws, self.kernels)
        loss = float(np.dot(w, ce))
        if self.l2:
            for W, dW in zip(self._weights, self._dweights, strict=True):
                loss += 0.5 * self.l2 * float(np.sum(W.astype(np.float64) ** 2))
                dW += self.l2 * W
        return loss, {"loss": loss, "ce": float(np.dot(w, ce))}

    def predict_proba(self, x):
        """q(y | x), shape (N, K)."""
        x = chk.as_data(x, self.dtype, "x", dim=self.input_dim)
        return np.exp(self.net.log_proba(x, self.kernels))

    def predict(self, x):
        """The most probable class of each row, (N,) int64."""
        return self.predict_proba(x).argmax(axis=1)

    def score(self, x, y):
        """Accuracy on ``(x, y)``."""
        y = check_labels(y, np.shape(x)[0], self.n_classes, unlabelled=False)
        return float(np.mean(self.predict(x) == y))
