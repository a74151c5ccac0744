"""The buffers of a model's forward and backward passes, made once per batch size and
reused, so that a training step allocates nothing.

:class:`Workspaces` keeps the last few layouts used (a training loop sees one batch size
and the last, smaller batch of an epoch; evaluation another); the two layouts are
:func:`train_buffers` (:meth:`VAEModel.loss_and_grad`) and :func:`infer_buffers`
(:meth:`VAEModel.reconstruct_mean`).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["Workspaces", "buffers", "train_buffers", "infer_buffers"]


class Workspaces:
    """Buffers by key, made by ``make(key)`` on first use and kept while among the last
    ``size`` keys used."""

    def __init__(self, make, size=4):
        self.make, self.size = make, int(size)
        self._kept = OrderedDict()

    def __call__(self, key):
        ws = self._kept.get(key)
        if ws is not None:
            self._kept.move_to_end(key)
            return ws
        ws = self._kept[key] = self.make(key)
        if len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return ws

    def __len__(self):
        return len(self._kept)


def buffers(model, key):
    """The layout ``key`` names: a batch size ``n`` (a training step), or ``("infer", n)``."""
    return infer_buffers(model, key[1]) if isinstance(key, tuple) else train_buffers(model, key)


def train_buffers(model, n):
    """A training step's buffers for a batch of ``n`` rows (``L * n`` decoder rows)."""
    L, z, c, d, dt = model.n_samples, model.latent_dim, model.cond_dim, model.input_dim, \
        model.dtype
    return {
        "enc_in": np.empty((n, d + c), dt) if c else None,
        "enc": model.encoder.workspace(n, dt),
        "noise": np.empty((L, n, z), dt),
        "dec_in": np.empty((L * n, z + c), dt),
        "dec": model.decoder.workspace(L * n, dt),
        "dout": np.empty((L * n, d), dt),
        "dh": np.empty((n, 2 * z), dt),
        "kl_col": np.empty(z, dt),
        "w": np.empty(z, dt),
    }


def infer_buffers(model, n):
    """:meth:`~npvae.core.model.VAEModel.reconstruct_mean`'s buffers for ``n`` rows."""
    z, c, dt = model.latent_dim, model.cond_dim, model.dtype
    return {"enc_in": np.empty((n, model.input_dim + c), dt),
            "enc": model.encoder.workspace(n, dt),
            "dec_in": np.empty((n, z + c), dt),
            "dec": model.decoder.workspace(n, dt)}
