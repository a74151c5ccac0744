"""Checks of a run folder's ``config.json``: every section the commands read, by type.

``config.json`` is a file a user can edit, so ``info``, ``sample``, ``eval``, ``reconstruct``
and ``train --resume`` check it before they use it: :func:`check_run_config` returns the
first problem as a short string (``"options.lr must be a positive finite number, got '3e-3'
(str)"``), or None. Options this module does not know (added by other commands) are left to
their users.
"""

from __future__ import annotations

import numbers

from npvae.core import checks as chk

__all__ = ["check_run_config", "OPTION_CHECKS"]


def _text(value, key, choices=None):
    if not isinstance(value, str) or len(value) > 4096:
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")
    if choices is not None and value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def _scale(value, key):
    if isinstance(value, str):
        return _text(value, key)
    return chk.positive_float(value, key)


def _options():
    from npvae.cli.parser import ACTIVATIONS, DATASETS, LIKELIHOODS

    pos, nonneg = chk.positive_int, chk.nonnegative_float
    return {
        "dataset": (_text, (*DATASETS, "file")), "data": (_text,), "n_train": (pos,),
        "n_test": (pos,), "epochs": (pos,), "batch_size": (pos,), "lr": (chk.positive_float,),
        "lr_schedule": (_text, ("none", "cosine", "step", "exponential")), "beta": (nonneg,),
        "kl_warmup": (nonneg,), "free_bits": (nonneg,), "samples": (pos,),
        "latent_dim": (pos,), "hidden": (chk.layer_sizes,),
        "activation": (_text, ACTIVATIONS), "likelihood": (_text, LIKELIHOODS),
        "early_stopping": (pos,), "clip_norm": (chk.positive_float,), "seed": (chk.seed,),
        "threads": (pos,), "binarize": (_text, ("none", "threshold", "stochastic")),
        "scale": (_scale,), "cache_dir": (_text,), "conditional": (chk.flag,),
    }


OPTION_CHECKS = None  # filled on first use (the parser's names, imported lazily)
_NULLABLE = ("data", "n_train", "n_test", "early_stopping", "clip_norm", "threads",
             "cache_dir", "scale")


def _count(value, key):
    if value is not None:
        chk.positive_int(value, key, 0)


def _dataset(ds):
    if not isinstance(ds.get("name"), str):
        raise TypeError("dataset.name must be a string")
    for key in ("n_train", "n_test", "n_features"):
        _count(ds.get(key), f"dataset.{key}")
    shape = ds.get("image_shape")
    if shape is not None:
        chk.layer_sizes(shape, "dataset.image_shape")
    for key in ("label_names", "classes"):
        names = ds.get(key)
        if names is not None and (not isinstance(names, list)
                                  or not all(isinstance(n, str) for n in names)):
            raise TypeError(f"dataset.{key} must be a list of strings")


def _result(res):
    for key in ("epochs", "best_epoch"):
        _count(res.get(key), f"result.{key}")
    for key in ("val_elbo", "val_recon", "val_kl", "seconds"):
        v = res.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise TypeError(f"result.{key} must be a number")
    if res.get("stop_reason") is not None and not isinstance(res["stop_reason"], str):
        raise TypeError("result.stop_reason must be a string")


def check_run_config(cfg):
    """The first type problem of a parsed ``config.json`` (a dict), or None."""
    global OPTION_CHECKS
    if OPTION_CHECKS is None:
        OPTION_CHECKS = _options()
    try:
        for section in ("options", "dataset", "result", "versions", "model"):
            value = cfg.get(section)
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{section} must be an object, got {type(value).__name__}")
        for key, (check, *args) in OPTION_CHECKS.items():
            opts = cfg.get("options") or {}
            if key in opts and not (opts[key] is None and key in _NULLABLE):
                check(opts[key], f"options.{key}", *args)
        if cfg.get("dataset"):
            _dataset(cfg["dataset"])
        if cfg.get("result"):
            _result(cfg["result"])
        if cfg.get("created") is not None:
            _text(cfg["created"], "created")
    except (TypeError, ValueError) as exc:
        return " ".join(str(exc).split())
    return None
