"""The buffers of a model's forward and backward passes, made once per batch size and
reused, so that a training step allocates nothing.

:class:`Workspaces` keeps the last few layouts used (a training loop sees one batch size
and the last, smaller batch of an epoch; evaluation another); the two layouts are
:func:`train_buffers` (:meth:`VAEModel.loss_and_grad`) and :func:`infer_buffers`
(:meth:`VAEModel.reconstruct_mean`); an importance-weighted objective's step takes the
first with its own sample count.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["Workspaces", "KeepsWorkspaces", "fill_noise", "buffers", "train_buffers",
           "infer_buffers"]


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


class KeepsWorkspaces:
    """Pickling and deep copies for a model with compiled kernels and workspaces (its
    ``kernels``, ``backend``, ``params``, ``likelihood`` and ``_new_workspaces()``): neither
    is kept; the kernels are looked up again by backend name (Numba dispatchers and the BLAS
    pool's ctypes handles do not pickle), and the workspaces start empty."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("kernels", None)
        state.pop("_workspaces", None)
        return state

    def __setstate__(self, state):
        from npvae.kernels import get_kernels

        self.__dict__.update(state)
        self.kernels = get_kernels(self.backend)
        self._workspaces = self._new_workspaces()
        if self.params is not None:  # a learned variance is a view into the buffer too
            self.likelihood.bind(self.params)


def fill_noise(out, noise, rng, dims):
    """Fill a step's noise buffer ``out``: with ``noise`` (checked to be ``out``'s shape,
    named ``dims`` in the error, e.g. ``"(L, N, Z)"``) or, if it is None, with standard
    normal draws from ``rng``."""
    if noise is None:
        rng.standard_normal(out=out, dtype=out.dtype)
        return
    noise = np.asarray(noise)
    if noise.shape != out.shape:
        raise ValueError(f"noise must have shape {dims} = {out.shape}, got {noise.shape}")
    out[...] = noise


def buffers(model, key):
    """The layout ``key`` names: a batch size ``n`` (a training step), ``("samples", n, S)``
    (a training step with S samples per row: an importance-weighted objective's L k), or
    ``("infer", n)``."""
    if not isinstance(key, tuple):
        return train_buffers(model, key)
    return train_buffers(model, key[1], key[2]) if key[0] == "samples" else \
        infer_buffers(model, key[1])


def train_buffers(model, n, samples=None):
    """A training step's buffers for a batch of ``n`` rows (``L * n`` decoder rows, L the
    model's ``n_samples`` unless ``samples`` says otherwise)."""
    L, z, c, d, dt = model.n_samples, model.latent_dim, model.cond_dim, model.input_dim, \
        model.dtype
    L = L if samples is None else samples
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
