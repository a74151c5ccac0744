r"""Optimizers over a model's flat parameter buffer: one fused loop per step.

Both optimizers read ``params.grad`` and update ``params.data`` in place, as one 1-D
array (llm.c's ``gpt2_update``). Gradient clipping by global norm is folded into the same
loop as a scale factor on the gradient, so it costs one extra read of the gradient (the
norm) and no extra write.
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.core.params import staggered_zeros
from npvae.kernels import get_kernels

__all__ = ["Adam", "SGD", "global_norm"]


def global_norm(grad, kernels=None):
    r"""Euclidean norm of the whole gradient, :math:`\lVert g \rVert_2`, accumulated in float64."""
    k = kernels or get_kernels()
    return float(np.sqrt(k.sum_squares(grad)))


class _Optimizer:
    def __init__(self, params, lr, clip_norm, backend):
        self.params = params
        self.lr = chk.positive_float(lr, "lr")
        self.clip_norm = None if clip_norm is None else chk.positive_float(clip_norm, "clip_norm")
        self.kernels = get_kernels(backend)
        self.t = 0
        self.last_grad_norm = None

    def _grad_scale(self):
        """Scale that clips the global gradient norm to ``clip_norm`` (1.0 when not clipping).

        Also records the norm in ``last_grad_norm`` and refuses a non-finite gradient, so a
        NaN never reaches the parameters.
        """
        if self.clip_norm is None:
            self.last_grad_norm = None
            return 1.0
        norm = global_norm(self.params.grad, self.kernels)
        self.last_grad_norm = norm
        if not np.isfinite(norm):
            raise FloatingPointError(
                "the gradient contains NaN or inf; lower the learning rate or check the data")
        return min(1.0, self.clip_norm / (norm + 1e-6))

    def state_dict(self):
        """Arrays and scalars that restore the optimizer exactly (see :meth:`load_state_dict`)."""
        raise NotImplementedError

    def _check_state(self, state, names):
        for name in names:
            a = np.asarray(state[name])
            if a.shape != (self.params.size,):
                raise ValueError(f"optimizer state {name!r} has shape {a.shape}, "
                                 f"expected ({self.params.size},): was it saved for another model?")


class Adam(_Optimizer):
    r"""Adam (Kingma & Ba 2015) in PyTorch's form, with optional decoupled weight decay (AdamW).

    .. math::
        g_t &= s\,\nabla_\theta L \qquad (s \le 1 \text{ clips the norm to clip\_norm}) \\
        \theta &\leftarrow \theta (1 - \eta \lambda) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        \theta &\leftarrow \theta - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    Parameters
    ----------
    params : ParamBuffer
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
        Decoupled (AdamW) decay :math:`\lambda`.
    clip_norm : float, optional
        Clip the global gradient norm to this value before the update.
    backend : {"numba", "numpy"}, optional
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=None, backend=None):
        super().__init__(params, lr, clip_norm, backend)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r:.60}")
        self.betas = tuple(chk.fraction(b, f"betas[{i}]") for i, b in enumerate(betas))
        self.eps = chk.positive_float(eps, "eps")
        self.weight_decay = chk.nonnegative_float(weight_decay, "weight_decay")
        self.m = staggered_zeros(params.size, params.data.dtype, 2)  # see staggered_zeros
        self.v = staggered_zeros(params.size, params.data.dtype, 3)

    def step(self, deferred=None):
        """Apply one update from ``params.grad``.

        Parameters
        ----------
        deferred : dict of str to (x, delta), optional
            Weight blocks (by parameter name) whose gradient ``x.T @ delta`` was not formed,
            given as its two factors; their update computes it on the fly
            (``VAEModel.train_step`` passes them from its workspace). Not combined with
            ``clip_norm``, whose norm would need the formed gradient.
        """
        if deferred and self.clip_norm is not None:
            raise ValueError("deferred weight gradients cannot be clipped; pass clip_norm=None")
        s = self._grad_scale()
        self.t += 1
        b1, b2 = self.betas
        args = (self.lr, b1, b2, self.eps, 1.0 - b1 ** self.t, 1.0 - b2 ** self.t,
                self.weight_decay)
        p, g, m, v = self.params.data, self.params.grad, self.m, self.v
        start = 0
        for name, sl in self._deferred_slices(deferred):  # the rest as contiguous runs
            if sl.start > start:
                self.kernels.adam_step(p[start:sl.start], g[start:sl.start], m[start:sl.start],
                                       v[start:sl.start], *args, s)
            shape = self.params.shapes[name]
            x, delta = deferred[name]
            self.kernels.adam_step_outer(p[sl].reshape(shape), x, delta, m[sl].reshape(shape),
                                         v[sl].reshape(shape), *args)
            start = sl.stop
        if start < p.shape[0]:
            self.kernels.adam_step(p[start:], g[start:], m[start:], v[start:], *args, s)

    def _deferred_slices(self, deferred):
        if not deferred:
            return []
        slices = self.params.block_slices()
        return sorted(((name, slices[name]) for name in deferred), key=lambda t: t[1].start)

    def state_dict(self):
        return {"name": "adam", "t": self.t, "lr": self.lr, "betas": list(self.betas),
                "eps": self.eps, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                "m": self.m.copy(), "v": self.v.copy()}

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` (hyper-parameters included)."""
        if state.get("name", "adam") != "adam":
            raise ValueError(f"this is an Adam optimizer, the state is for {state['name']!r}")
        self._check_state(state, ("m", "v"))
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.t = int(state["t"])
        self.lr = float(state.get("lr", self.lr))
        self.betas = tuple(float(b) for b in state.get("betas", self.betas))
        self.eps = float(state.get("eps", self.eps))
        self.weight_decay = float(state.get("weight_decay", self.weight_decay))
        self.clip_norm = state.get("clip_norm", self.clip_norm)


class SGD(_Optimizer):
    r"""Stochastic gradient descent with (Nesterov) momentum, PyTorch's form.

    .. math::
        d_t = s\,g_t + \lambda \theta, \quad
        b_t = d_t \text{ at } t = 1 \text{, else } \mu b_{t-1} + d_t, \quad
        \theta \leftarrow \theta - \eta\,(d_t + \mu b_t \text{ if Nesterov else } b_t)

    Parameters
    ----------
    params : ParamBuffer
    lr : float, default 1e-2
    momentum : float, default 0
    weight_decay : float, default 0
        Coupled L2 penalty :math:`\lambda` (added to the gradient, as PyTorch's SGD does).
    nesterov : bool, default False
    clip_norm : float, optional
    backend : {"numba", "numpy"}, optional
    """

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0, nesterov=False,
                 clip_norm=None, backend=None):
        super().__init__(params, lr, clip_norm, backend)
        self.momentum = chk.fraction(momentum, "momentum")
        self.nesterov = chk.flag(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = chk.nonnegative_float(weight_decay, "weight_decay")
        self.buf = staggered_zeros(params.size, params.data.dtype, 2)

    def step(self):
        """Apply one update from ``params.grad``."""
        s = self._grad_scale()
        self.t += 1
        self.kernels.sgd_step(self.params.data, self.params.grad, self.buf, self.lr,
                              self.momentum, self.weight_decay, self.nesterov, self.t == 1, s)

    def state_dict(self):
        return {"name": "sgd", "t": self.t, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov,
                "clip_norm": self.clip_norm, "buf": self.buf.copy()}

    def load_state_dict(self, state):
        if state.get("name", "sgd") != "sgd":
            raise ValueError(f"this is an SGD optimizer, the state is for {state['name']!r}")
        self._check_state(state, ("buf",))
        self.buf[...] = state["buf"]
        self.t = int(state["t"])
        self.lr = float(state.get("lr", self.lr))
        self.momentum = float(state.get("momentum", self.momentum))
        self.weight_decay = float(state.get("weight_decay", self.weight_decay))
        self.nesterov = bool(state.get("nesterov", self.nesterov))
        self.clip_norm = state.get("clip_norm", self.clip_norm)
