r"""Weights to and from the PyTorch examples VAE (``pytorch/examples``, ``vae/main.py``).

That model is::

    fc1  = Linear(D, H)    # h1 = relu(fc1(x))
    fc21 = Linear(H, Z)    # mu = fc21(h1)
    fc22 = Linear(H, Z)    # logvar = fc22(h1)
    fc3  = Linear(Z, H)    # h3 = relu(fc3(z))
    fc4  = Linear(H, D)    # logits = fc4(h3); the examples return sigmoid(logits)

with D = 784, H = 400, Z = 20 there; any sizes work here. ``torch.nn.Linear`` computes
``x @ weight.T + bias`` with ``weight`` of shape (out, in); npvae's dense layers compute
``x @ W + b`` with ``W`` of shape (in, out). So ``W = weight.T``, and npvae's one encoder
head ``encoder.out`` (H, 2Z) holds ``fc21`` in its columns ``[:Z]`` and ``fc22`` in
``[Z:]``:

=================  ===================================
npvae              PyTorch examples ``state_dict``
=================  ===================================
``encoder.0.W``    ``fc1.weight.T``
``encoder.0.b``    ``fc1.bias``
``encoder.out.W``  ``[fc21.weight.T | fc22.weight.T]``
``encoder.out.b``  ``[fc21.bias | fc22.bias]``
``decoder.0.W``    ``fc3.weight.T``
``decoder.0.b``    ``fc3.bias``
``decoder.out.W``  ``fc4.weight.T``
``decoder.out.b``  ``fc4.bias``
=================  ===================================

The state_dict holds weights only: the examples VAE uses ReLU and a Bernoulli likelihood,
so for the same outputs the npvae model must too (the defaults). This module imports torch
only inside :func:`to_torch_state_dict` (``as_tensors=True``); :func:`from_torch_state_dict`
reads tensors through their ``numpy()``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["TORCH_KEYS", "to_torch_state_dict", "from_torch_state_dict"]

TORCH_KEYS = ("fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight",
              "fc22.bias", "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias")


def _check_layout(model):
    if len(model.encoder_hidden) != 1 or len(model.decoder_hidden) != 1:
        raise ValueError(
            "the PyTorch examples VAE has one hidden layer each way (fc1; fc3), but this model "
            f"has encoder_hidden={tuple(model.encoder_hidden)} and decoder_hidden="
            f"{tuple(model.decoder_hidden)}; build it with hidden=(H,)")
    extra = [n for n in model.named_parameters() if n.startswith("likelihood.")]
    if extra:
        raise ValueError(f"the PyTorch examples VAE has no place for {extra} (a learned "
                         "variance); use likelihood='bernoulli'")


def to_torch_state_dict(model, *, as_tensors=True):
    """The weights of ``model`` in the PyTorch examples VAE's ``state_dict`` layout.

    Parameters
    ----------
    model : npvae.VAE or npvae.VAEModel
        Built, with one hidden layer each way (``hidden=(H,)``).
    as_tensors : bool, default True
        ``torch.Tensor`` values (copies, float32 or float64 as the model), ready for
        ``torch_vae.load_state_dict(...)``; False gives NumPy arrays and needs no torch.

    Returns
    -------
    collections.OrderedDict
        ``fc1.weight`` (H, D), ``fc1.bias`` (H,), ``fc21.weight`` (Z, H), ``fc21.bias``,
        ``fc22.weight``, ``fc22.bias``, ``fc3.weight`` (H, Z), ``fc3.bias``, ``fc4.weight``
        (D, H), ``fc4.bias`` (D,): torch's (out, in) weight layout.
    """
    model._require_built()
    _check_layout(model)
    p, z = model.named_parameters(), model.latent_dim
    enc_w, enc_b = p["encoder.out.W"], p["encoder.out.b"]
    arrays = OrderedDict([
        ("fc1.weight", p["encoder.0.W"].T), ("fc1.bias", p["encoder.0.b"]),
        ("fc21.weight", enc_w[:, :z].T), ("fc21.bias", enc_b[:z]),
        ("fc22.weight", enc_w[:, z:].T), ("fc22.bias", enc_b[z:]),
        ("fc3.weight", p["decoder.0.W"].T), ("fc3.bias", p["decoder.0.b"]),
        ("fc4.weight", p["decoder.out.W"].T), ("fc4.bias", p["decoder.out.b"]),
    ])
    arrays = OrderedDict((k, np.ascontiguousarray(v).copy()) for k, v in arrays.items())
    if not as_tensors:
        return arrays
    import torch  # the only place npvae imports torch

    return OrderedDict((k, torch.from_numpy(v)) for k, v in arrays.items())


def _as_array(value, key):
    if hasattr(value, "detach"):  # a torch.Tensor, read without importing torch
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"state_dict[{key!r}] has dtype {a.dtype}; expected floats")
    return a


def from_torch_state_dict(state_dict, model=None, **vae_kwargs):
    """A VAE holding the weights of a PyTorch examples VAE's ``state_dict``.

    Parameters
    ----------
    state_dict : mapping
        ``torch_vae.state_dict()``, or the same keys with NumPy arrays (see
        :data:`TORCH_KEYS`); other keys are an error.
    model : npvae.VAE or npvae.VAEModel, optional
        Load into this built model (its sizes must match) instead of making one.
    **vae_kwargs
        Further :class:`npvae.VAE` arguments for the new model (``dtype``, ``backend``,
        ``seed``, ...); the sizes come from the state_dict.

    Returns
    -------
    npvae.VAE (or ``model``)
    """
    keys = set(state_dict)
    missing, extra = [k for k in TORCH_KEYS if k not in keys], sorted(keys - set(TORCH_KEYS))
    if missing or extra:
        raise ValueError(f"not a PyTorch examples VAE state_dict: missing {missing}, "
                         f"unexpected {extra}")
    t = {k: _as_array(state_dict[k], k) for k in TORCH_KEYS}
    hidden, d = t["fc1.weight"].shape if t["fc1.weight"].ndim == 2 else (None, None)
    z = t["fc21.weight"].shape[0] if t["fc21.weight"].ndim == 2 else None
    if hidden is None or z is None or t["fc4.weight"].ndim != 2:
        raise ValueError("the state_dict's weights must be 2-D (out, in)")
    named = {
        "encoder.0.W": t["fc1.weight"].T, "encoder.0.b": t["fc1.bias"],
        "encoder.out.W": np.hstack([t["fc21.weight"].T, t["fc22.weight"].T]),
        "encoder.out.b": np.concatenate([t["fc21.bias"], t["fc22.bias"]]),
        "decoder.0.W": t["fc3.weight"].T, "decoder.0.b": t["fc3.bias"],
        "decoder.out.W": t["fc4.weight"].T, "decoder.out.b": t["fc4.bias"],
    }
    if model is None:
        from npvae.training.estimator import VAE

        model = VAE(input_dim=d, latent_dim=z, encoder_hidden=(hidden,),
                    decoder_hidden=(t["fc3.weight"].shape[0],), **vae_kwargs)
    else:
        model._require_built()
        _check_layout(model)
    model.params.load(named)  # checks every name and shape, and finiteness
    return model
