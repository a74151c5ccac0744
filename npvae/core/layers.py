r"""Dense layers and multi-layer perceptrons with hand-written backward passes.

A :class:`Dense` layer computes ``y = f(x @ W + b)`` with ``W`` of shape ``(in, out)``.
Its parameters are views into a :class:`~npvae.core.params.ParamBuffer`, and its backward pass
*writes* (never accumulates) ``dW`` and ``db`` into the gradient buffer, so no
``zero_grad`` is needed. Forward and backward take the buffers to write into, so a model
that keeps one workspace per batch size allocates nothing per step.
"""

from __future__ import annotations

import numpy as np

from npvae.core.activations import get_activation
from npvae.kernels import get_kernels

__all__ = ["Dense", "MLP"]


class Dense:
    r"""Fully connected layer with a fused activation: ``y = f(x W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output sizes. ``W`` has shape ``(n_in, n_out)``, ``b`` shape ``(n_out,)``.
    activation : str or Activation, default "identity"
    name : str
        Prefix of the parameter names: ``{name}.W`` and ``{name}.b``.
    """

    def __init__(self, n_in, n_out, activation="identity", name="dense"):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ValueError(f"Dense {name!r}: sizes must be >= 1, got in={n_in}, out={n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.act = get_activation(activation)
        self.name = name
        self.W = self.b = self.dW = self.db = None
        self._params = None  # the ParamBuffer of bind()
        self._db_scratch = None

    def param_shapes(self):
        """Names and shapes this layer needs in the parameter buffer."""
        return {f"{self.name}.W": (self.n_in, self.n_out), f"{self.name}.b": (self.n_out,)}

    def bind(self, params):
        """Point ``W``, ``b``, ``dW``, ``db`` at their views in ``params``."""
        self.W = params.view(f"{self.name}.W")
        self.b = params.view(f"{self.name}.b")
        self.dW = params.grad_view(f"{self.name}.W")
        self.db = params.grad_view(f"{self.name}.b")
        self._params = params

    def __getstate__(self):
        # pickle/deepcopy: W, b, dW, db are views into the ParamBuffer, which is pickled
        # once; they are re-made from it on unpickling (a pickled view would be a copy)
        return {**self.__dict__, "W": None, "b": None, "dW": None, "db": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if state.get("_params") is not None:
            self.bind(state["_params"])

    def initialize(self, rng, scheme="auto"):
        r"""Draw ``W`` from ``rng`` and zero ``b``.

        ``"he"``: :math:`W \sim \mathcal N(0, 2/n_{in})` (He et al. 2015, for ReLU-like
        units); ``"glorot"``: :math:`W \sim U(-a, a)`, :math:`a = \sqrt{6/(n_{in}+n_{out})}`
        (Glorot & Bengio 2010). ``"auto"`` picks the one suited to the activation.
        """
        scheme = self.act.init if scheme == "auto" else scheme
        if scheme == "he":
            w = rng.standard_normal(self.W.shape) * np.sqrt(2.0 / self.n_in)
        elif scheme == "glorot":
            a = np.sqrt(6.0 / (self.n_in + self.n_out))
            w = rng.uniform(-a, a, size=self.W.shape)
        else:
            raise ValueError(f"init must be 'auto', 'he' or 'glorot', got {scheme!r}")
        self.W[...] = w
        self.b[...] = 0

    def forward(self, x, out=None, kernels=None, pre=None):
        """Return ``y = f(x @ W + b)``, shape (N, n_out), written into ``out`` if given.

        For an activation that :attr:`~npvae.core.activations.Activation.needs_pre`, the
        pre-activation ``a = x @ W + b`` is written into ``pre`` (for :meth:`backward`);
        other layers ignore ``pre``."""
        k = kernels or get_kernels()
        if out is None:
            out = np.empty((x.shape[0], self.n_out), dtype=self.W.dtype)
        k.matmul(x, self.W, out)  # (N, out)
        act = self.act
        if act.needs_pre:
            k.bias_act_pre(out, self.b, act.code, act.param,
                           np.empty_like(out) if pre is None else pre)
        else:
            k.bias_act(out, self.b, act.code, act.param)
        return out

    def backward(self, dy, x, y, dx=None, need_dx=True, kernels=None, defer=False, pre=None):
        r"""Write ``dW``, ``db`` and return ``dx``.

        With :math:`a = xW + b` and :math:`y = f(a)`:

        .. math::
            \delta = dy \odot f'(a), \quad
            \partial W = x^\top \delta, \quad
            \partial b = \textstyle\sum_n \delta_n, \quad
            \partial x = \delta W^\top

        ``f'(a)`` is computed from the output ``y``, or, for an activation that
        ``needs_pre``, from the pre-activation ``pre`` that :meth:`forward` wrote (without
        it, ``a`` is recomputed: one more GEMM). ``dy`` is overwritten with
        :math:`\delta`. Pass ``need_dx=False`` to skip the input gradient (a model's first
        layer has no use for it). With ``defer=True`` the weight gradient is not formed: the
        caller takes its two factors, ``x`` and ``dy`` (now :math:`\delta`), to an optimizer
        that fuses :math:`x^\top \delta` into its update (``VAEModel.train_step`` does).
        """
        k = kernels or get_kernels()
        act = self.act
        if act.needs_pre:  # f'(a) from the pre-activation, not the output
            y = pre if pre is not None else self._preactivation(x, k)
        k.act_backward(dy, y, act.code, act.param, self.db)  # dy <- delta
        if not defer:
            k.matmul(x.T, dy, self.dW)  # (in, out)
        if not need_dx:
            return None
        if dx is None:
            dx = np.empty((dy.shape[0], self.n_in), dtype=dy.dtype)
        return k.matmul(dy, self.W.T, dx)  # (N, in)

    def backward_input(self, dy, x, y, dx=None, kernels=None, pre=None):
        r"""Return only the input gradient :math:`\partial x = (dy \odot f'(a)) W^\top`.

        For gradients with respect to the *input* of a fixed network (a sampler's
        :math:`\nabla_z \log p(x|z)` through the decoder): the activation backward and one
        GEMM, no ``dW``/``db`` and nothing written into the model's gradient buffer.
        ``dy`` is overwritten with :math:`\delta = dy \odot f'(a)`. ``f'(a)`` comes from
        ``y``, or from ``pre`` (recomputed from ``x`` if not given) for an activation that
        ``needs_pre``, as in :meth:`backward`.
        """
        k = kernels or get_kernels()
        act = self.act
        if act.code != 0:  # identity: delta = dy
            if act.needs_pre:
                y = pre if pre is not None else self._preactivation(x, k)
            if self._db_scratch is None or self._db_scratch.dtype != dy.dtype:
                self._db_scratch = np.empty(self.n_out, dy.dtype)  # act_backward's bias sum
            k.act_backward(dy, y, act.code, act.param, self._db_scratch)
        if dx is None:
            dx = np.empty((dy.shape[0], self.n_in), dtype=dy.dtype)
        return k.matmul(dy, self.W.T, dx)  # (N, in)

    def _preactivation(self, x, k):
        a = np.empty((x.shape[0], self.n_out), dtype=self.W.dtype)
        k.matmul(x, self.W, a)
        a += self.b
        return a

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, {self.act!r}, name={self.name!r})"


class MLP:
    """A stack of :class:`Dense` layers; zero hidden layers gives one linear(ish) layer.

    Parameters
    ----------
    sizes : sequence of int
        ``[n_in, hidden_1, ..., hidden_k, n_out]``; ``k`` may be 0.
    activation : str or Activation
        Activation of the hidden layers.
    out_activation : str or Activation, default "identity"
        Activation of the last layer.
    name : str
        Layers are named ``{name}.0``, ``{name}.1``, ... and the last ``{name}.out``.
    """

    def __init__(self, sizes, activation="relu", out_activation="identity", name="mlp"):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP {name!r} needs at least input and output sizes, got {sizes}")
        self.sizes = sizes
        self.layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            self.layers.append(Dense(a, b, out_activation if last else activation,
                                     name=f"{name}.out" if last else f"{name}.{i}"))

    def param_shapes(self):
        shapes = {}
        for layer in self.layers:
            shapes.update(layer.param_shapes())
        return shapes

    def bind(self, params):
        for layer in self.layers:
            layer.bind(params)

    def initialize(self, rng, scheme="auto"):
        for layer in self.layers:
            layer.initialize(rng, scheme)

    def workspace(self, n, dtype):
        """Buffers for a batch of ``n``: every layer's output, the gradient w.r.t. each
        layer's input (``grads[i]`` has the shape of layer ``i``'s input) and, for the
        layers whose activation ``needs_pre`` only, the pre-activation (``pres[i]``, None
        for the others)."""
        outs = [np.empty((n, s), dtype=dtype) for s in self.sizes[1:]]
        grads = [np.empty((n, s), dtype=dtype) for s in self.sizes[:-1]]
        pres = [np.empty((n, layer.n_out), dtype=dtype) if layer.act.needs_pre else None
                for layer in self.layers]
        return {"outs": outs, "grads": grads, "pres": pres}

    def forward(self, x, ws, kernels=None):
        """Run every layer, writing into ``ws["outs"]`` (and ``ws["pres"]``); return the
        last output."""
        h = x
        pres = ws.get("pres") or [None] * len(self.layers)
        for layer, out, pre in zip(self.layers, ws["outs"], pres, strict=True):
            h = layer.forward(h, out, kernels, pre)
        return h

    def backward(self, dy, x, ws, need_dx=True, kernels=None, defer=()):
        """Backpropagate ``dy`` (the gradient of the last output, overwritten) through every
        layer, writing each layer's ``dW`` and ``db``; return the input gradient or None.

        Layers in ``defer`` do not form ``dW``; if ``defer`` is a dict, ``defer[layer]`` is
        set to the two factors of the gradient, ``(x, delta)`` with ``dW = x.T @ delta``
        (buffers of ``ws`` or the arrays passed in, valid until the next call)."""
        outs, grads = ws["outs"], ws["grads"]
        pres = ws.get("pres") or [None] * len(self.layers)
        g = dy
        for i in range(len(self.layers) - 1, -1, -1):
            inp = x if i == 0 else outs[i - 1]
            want = need_dx or i > 0
            layer = self.layers[i]
            if layer in defer:
                if isinstance(defer, dict):
                    defer[layer] = (inp, g)  # g becomes delta in place, below
                g = layer.backward(g, inp, outs[i], grads[i] if want else None, want, kernels,
                                   True, pres[i])
            else:
                g = layer.backward(g, inp, outs[i], grads[i] if want else None, want, kernels,
                                   False, pres[i])
        return g

    def backward_input(self, dy, x, ws, kernels=None, out=None):
        """Backpropagate ``dy`` (overwritten) to the network's input only, after
        :meth:`forward` filled ``ws``: :meth:`Dense.backward_input` layer by layer, one
        GEMM each, no parameter gradients. Returns the input gradient, shape of ``x``,
        written into ``out`` if given, else ``ws["grads"][0]``."""
        outs, grads = ws["outs"], ws["grads"]
        pres = ws.get("pres") or [None] * len(self.layers)
        g = dy
        for i in range(len(self.layers) - 1, -1, -1):
            dx = grads[i] if i or out is None else out
            g = self.layers[i].backward_input(g, x if i == 0 else outs[i - 1], outs[i], dx,
                                              kernels, pres[i])
        return g
