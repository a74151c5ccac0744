"""An npvae model's checkpoint: which arrays and which config a saved model holds.

The file format itself (named arrays and a JSON config in one ``.npz``, written
atomically, never unpickled, every array checksummed) is :mod:`npvae.training.archive`;
its API is re-exported here, so ``from npvae.training.checkpoint import load_checkpoint``
is the one import a caller needs.

A model's arrays are ``params/<name>`` for every named parameter (see
``VAEModel.named_parameters``); a training checkpoint adds ``optim/...`` (the optimizer's
state) and ``train/best_params``. Its config is ``VAEModel.config()`` plus ``history`` and,
for a training checkpoint, ``training``.

The likelihood is stored as the likelihood writes it (``Likelihood.spec()``:
``{"name": "gaussian", "variance": 0.5}``). Checkpoints written before that hold its name
and a separate ``variance``; ``VAEModel(**config)`` and :mod:`npvae.training.schema` read
both forms.
"""

from npvae.training.archive import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_KEY,
    CheckpointError,
    check_shapes,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "CHECKPOINT_KIND", "CheckpointError", "FORMAT_NAME", "FORMAT_VERSION", "META_KEY",
    "check_shapes", "likelihood_name", "load_checkpoint", "param_arrays", "restore_params",
    "save_checkpoint",
]

CHECKPOINT_KIND = "npvae.VAE"  # the kind of every model checkpoint (saved model or training)


def param_arrays(model):
    """``{"params/<name>": array}`` for every named parameter (views, not copies)."""
    return {f"params/{name}": v for name, v in model.named_parameters().items()}


def restore_params(model, arrays, path=None):
    """Copy ``params/<name>`` arrays into ``model``, raising CheckpointError on any mismatch."""
    expected = {f"params/{n}": s for n, s in model.params.shapes.items()}
    check_shapes(arrays, expected, path=path)
    extra = sorted(k for k in arrays if k.startswith("params/") and k not in expected)
    if extra:
        raise CheckpointError(f"{path}: checkpoint has parameters the model lacks: {extra}")
    try:
        model.params.load({k[7:]: arrays[k] for k in expected})
    except ValueError as exc:  # NaN or inf weights
        raise CheckpointError(f"{path}: {exc}; the file is damaged") from None


def likelihood_name(config):
    """The likelihood's name in a model config of either form (a spec, or an older
    checkpoint's plain name)."""
    lik = config.get("likelihood")
    return lik.get("name") if isinstance(lik, dict) else lik
