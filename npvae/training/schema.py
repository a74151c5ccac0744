"""What the config of a VAE checkpoint must hold, checked before anything is built.

A checkpoint's JSON config comes from a file, so every value is checked for its type and
range with the same validators the constructor and ``fit`` use (:mod:`npvae.core.checks`):
``"dtype": null`` or ``"beta": "10"`` are refused, not read as float64 or 10.0. Every problem
is raised as :class:`~npvae.training.checkpoint.CheckpointError` naming the key.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np

from npvae.core import checks as chk
from npvae.core.activations import ACTIVATIONS
from npvae.core.likelihoods import LIKELIHOODS
from npvae.training.checkpoint import CheckpointError, check_shapes

__all__ = ["model_kwargs", "check_history", "check_training", "check_manifest_fits", "STOP_REASONS"]

STOP_REASONS = ("completed", "early_stopping", "interrupted", "callback", "diverged")
_HISTORY_NUMBERS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl",
                    "beta", "lr", "seconds")


def _checked(path, key, check, value, *args):
    try:
        return check(value, key, *args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config value {key!r} is invalid: {exc}") from None


def _activation(value, key):
    if isinstance(value, str):
        if value.lower().replace("-", "_") not in ACTIVATIONS:
            raise ValueError(f"unknown activation {value[:40]!r}")
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str) \
            and value["name"] in ACTIVATIONS:
        param = value.get("param", 0.0)
        chk.nonnegative_float(param if param is not None else 0.0, f"{key}.param")
        cls = ACTIVATIONS[value["name"]]
        return cls(param) if param else cls()
    raise TypeError(f"{key} must be an activation name or {{name, param}}, got "
                    f"{type(value).__name__}")


def _likelihood(value, key):
    """A likelihood's name (older checkpoints), or its spec ``{"name": ..., **options}``
    with every option checked by the likelihood's own check (``Likelihood.options``)."""
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        cls = LIKELIHOODS.get(value["name"].lower())
        if cls is not None:
            for option, v in value.items():
                if option == "name":
                    continue
                if option not in cls.options:
                    raise ValueError(f"{key} {cls.name!r} takes no option {option[:40]!r}")
                cls.options[option](v, f"{key}.{option}")
            return value
    if not isinstance(value, str) or value.lower() not in LIKELIHOODS:
        raise ValueError(f"{key} must be one of {', '.join(LIKELIHOODS)}, or a spec "
                         "{name, options}")
    return value


def _dtype(value, key):
    if value not in ("float32", "float64"):
        raise TypeError(f"{key} must be 'float32' or 'float64', got {value!r:.40}")
    return value


_MODEL_KEYS = {
    "input_dim": (chk.positive_int,), "latent_dim": (chk.positive_int,),
    "encoder_hidden": (chk.layer_sizes,), "decoder_hidden": (chk.layer_sizes,),
    "activation": (_activation,), "likelihood": (_likelihood,),
    "variance": (chk.positive_float,), "beta": (chk.nonnegative_float,),
    "n_samples": (chk.positive_int,), "free_bits": (chk.nonnegative_float,),
    "cond_dim": (chk.positive_int, 0), "dtype": (_dtype,),
    "init": (chk.choice, ("auto", "he", "glorot")), "seed": (chk.seed,),
}
_REQUIRED = ("input_dim", "latent_dim", "encoder_hidden", "decoder_hidden")


def model_kwargs(config, path):
    """The constructor arguments a checkpoint config describes, every one type-checked."""
    missing = [k for k in _REQUIRED if config.get(k) is None]
    if missing:
        raise CheckpointError(f"{path}: config has no {', '.join(missing)}; not a saved VAE")
    kwargs = {}
    for key, (check, *args) in _MODEL_KEYS.items():
        if key in config:
            kwargs[key] = _checked(path, key, check, config[key], *args)
    return kwargs


def _number_or_none(value, key):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{key} must be a number or null, got {type(value).__name__}")
    return value


def check_history(history, path):
    """A list of per-epoch dicts with an integer epoch and numbers (or null) for the losses."""
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: config 'history' must be a list of epoch records")
    for i, rec in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(rec, dict):
            raise CheckpointError(f"{path}: config {where} is not an epoch record (a dict)")
        _checked(path, f"{where}.epoch", chk.positive_int, rec.get("epoch"))
        for key in _HISTORY_NUMBERS:
            _checked(path, f"{where}.{key}", _number_or_none, rec.get(key))
        if "interrupted" in rec:
            _checked(path, f"{where}.interrupted", chk.flag, rec["interrupted"])
    return history


def _dict(value, key):
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object, got {type(value).__name__}")
    return value


def check_training(tr, path):
    """The training state a resumable checkpoint holds: counters, settings, RNG states,
    running sums and the early-stopping record, each of the right type."""
    _checked(path, "training", _dict, tr)
    for key in ("epoch", "step", "step_in_epoch"):
        _checked(path, f"training.{key}", chk.positive_int, tr.get(key), 0)
    _checked(path, "training.seed", chk.seed, tr.get("seed"))
    settings = _checked(path, "training.settings", _dict, tr.get("settings"))
    _checked(path, "training.settings.optimizer", chk.choice, settings.get("optimizer"),
             ("adam", "sgd"))
    for key in ("epochs", "batch_size"):
        _checked(path, f"training.settings.{key}", chk.positive_int, settings.get(key))
    _checked(path, "training.finished", chk.choice, tr.get("finished"), (None, *STOP_REASONS))
    rng = _checked(path, "training.rng", _dict, tr.get("rng"))
    for key in ("shuffle", "noise", "binarize"):
        _checked(path, f"training.rng.{key}", _dict, rng.get(key))
    partial = _checked(path, "training.partial", _dict, tr.get("partial"))
    for key in ("loss", "recon", "kl", "seconds"):
        _checked(path, f"training.partial.{key}", chk.nonnegative_float
                 if key == "seconds" else _finite, partial.get(key))
    _checked(path, "training.partial.rows", chk.positive_int, partial.get("rows"), 0)
    best = _checked(path, "training.best", _dict, tr.get("best"))
    _checked(path, "training.best.val", _number_or_none, best.get("val"))
    if best.get("epoch") is not None:
        _checked(path, "training.best.epoch", chk.positive_int, best["epoch"])
    _checked(path, "training.best.bad_epochs", chk.positive_int, best.get("bad_epochs"), 0)
    _checked(path, "training.optimizer", _dict, tr.get("optimizer"))
    return tr


def _finite(value, key):
    v = chk.nonnegative_float(abs(value), key) if isinstance(value, numbers.Real) \
        and not isinstance(value, bool) else None
    if v is None:
        raise TypeError(f"{key} must be a finite number, got {type(value).__name__}")
    return value


def check_manifest_fits(model, meta, path):
    """The manifest's parameter arrays must be exactly those of ``model`` (names and
    shapes), and the training arrays one value per parameter, before anything is read."""
    shapes = {e["name"]: tuple(e["shape"]) for e in meta["arrays"]}
    expected = {f"params/{n}": s for n, s in model.param_shapes(model.input_dim).items()}
    check_shapes({k: SimpleNamespace(shape=v) for k, v in shapes.items()}, expected, path=path)
    extra = sorted(k for k in shapes if k.startswith("params/") and k not in expected)
    if extra:
        raise CheckpointError(f"{path}: checkpoint has parameters the model lacks: {extra}")
    size = sum(int(np.prod(s, dtype=object)) for s in expected.values())
    for name, shape in shapes.items():
        if not name.startswith("params/") and name != "optim/t" and shape not in ((size,), ()):
            raise CheckpointError(f"{path}: array {name!r} has shape {shape}; the model has "
                                  f"{size} parameters, so it should be ({size},)")
