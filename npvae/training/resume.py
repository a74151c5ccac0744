"""Resuming a run: what a training checkpoint holds, and how a run continues from it.

A checkpoint holds the parameters, the optimizer state (Adam's m, v, t), the RNG states,
the epoch and step counters, the history and, mid-epoch, the running sums of the epoch.
Shuffling and binarisation draw once per epoch, so the checkpoint stores their states *at
the start of the epoch* and the noise and corruption states *now*: resuming redraws the
same permutation and binary data, skips the steps already taken and continues, so a
resumed run (from an epoch boundary or from a Ctrl-C mid-epoch) equals an uninterrupted
one bit for bit, provided the same training settings (``epochs`` too when an lr schedule
is used).
"""

from __future__ import annotations

import warnings

import numpy as np

from npvae.training.checkpoint import (
    CHECKPOINT_KIND,
    CheckpointError,
    likelihood_name,
    load_checkpoint,
    param_arrays,
    restore_params,
)

__all__ = ["STRUCTURE_KEYS", "checkpoint_state", "restore"]

# constructor arguments that change the parameter layout or the noise shape
STRUCTURE_KEYS = ("input_dim", "latent_dim", "encoder_hidden", "decoder_hidden", "activation",
                  "likelihood", "cond_dim", "dtype", "n_samples")
# fit arguments that must match for a resumed run to equal an uninterrupted one
_REPLAY_KEYS = ("batch_size", "lr", "optimizer", "lr_schedule", "kl_warmup_epochs",
                "free_bits", "clip_norm", "weight_decay", "binarize", "corruption",
                "corruption_level")


def checkpoint_state(trainer):
    """``(arrays, config)`` of a checkpoint of ``trainer``'s current state."""
    m, opt = trainer.model, trainer.opt
    sd = opt.state_dict()
    arrays = dict(param_arrays(m))
    arrays.update({f"optim/{k}": v for k, v in sd.items() if isinstance(v, np.ndarray)})
    if trainer.best_params is not None:
        arrays["train/best_params"] = trainer.best_params
    if trainer.step_in_epoch == 0:
        shuffle, binar = trainer.rng_shuffle.bit_generator.state, \
            trainer.rng_binarize.bit_generator.state
    else:
        shuffle, binar = trainer._epoch_start_states
    training = {
        "epoch": trainer.epoch, "step": trainer.step, "step_in_epoch": trainer.step_in_epoch,
        "seed": trainer.seed, "settings": trainer._settings(), "finished": trainer.finished,
        "rng": {"shuffle": shuffle, "noise": trainer.rng_noise.bit_generator.state,
                "binarize": binar, "corrupt": trainer.rng_corrupt.bit_generator.state},
        "partial": dict(trainer.partial), "best": dict(trainer.best),
        "optimizer": {k: v for k, v in sd.items() if not isinstance(v, np.ndarray)},
    }
    return arrays, {**m.config(), "history": trainer.history, "training": training}


def restore(trainer, path):
    """Put ``trainer`` (reset, its model built) in the state the checkpoint ``path`` saved;
    CheckpointError if it was written by another model or optimizer."""
    arrays, config, _ = load_checkpoint(path, kind=CHECKPOINT_KIND)
    tr = config.get("training")
    if tr is None:
        raise CheckpointError(f"{path} holds a saved model without training state, so "
                              "it cannot be resumed; load it with VAE.load instead")
    mine = trainer.model.config()
    mine["likelihood"], config["likelihood"] = likelihood_name(mine), likelihood_name(config)
    diff = [f"{k}: checkpoint {config.get(k)!r}, model {mine[k]!r}"
            for k in STRUCTURE_KEYS if config.get(k) != mine[k]]
    if diff:
        raise CheckpointError(f"{path} was written by a different model; "
                              + "; ".join(diff))
    restore_params(trainer.model, arrays, path)
    old = tr["settings"]
    if old["optimizer"] != trainer.optimizer_name:
        raise CheckpointError(f"{path} was trained with optimizer={old['optimizer']!r}, "
                              f"not {trainer.optimizer_name!r}; pass the same optimizer")
    if tr["step_in_epoch"] and old["batch_size"] != trainer.batch_size:
        raise ValueError(f"{path} was interrupted mid-epoch with batch_size="
                         f"{old['batch_size']}; resume with the same batch_size")
    new = trainer._settings()
    changed = [k for k in _REPLAY_KEYS if old.get(k) != new[k]]
    if trainer.lr_schedule is not None and old["epochs"] != trainer.epochs:
        changed.append("epochs (the lr schedule depends on it)")
    if changed:
        warnings.warn(f"resuming {path} with different {', '.join(changed)}; the run "
                      "will not reproduce an uninterrupted one", stacklevel=4)
    trainer.seed = int(tr["seed"])
    trainer._reset()
    state = {**tr["optimizer"], **{k[6:]: a for k, a in arrays.items()
                                   if k.startswith("optim/")}}
    trainer.opt.load_state_dict(state)
    trainer.opt.clip_norm, trainer.opt.weight_decay = trainer.clip_norm, trainer.weight_decay
    for name in ("shuffle", "noise", "binarize", "corrupt"):
        if name in tr["rng"]:  # "corrupt" is absent from older checkpoints
            getattr(trainer, f"rng_{name}").bit_generator.state = tr["rng"][name]
    trainer.epoch, trainer.step = int(tr["epoch"]), int(tr["step"])
    trainer.step_in_epoch = int(tr["step_in_epoch"])
    trainer.partial, trainer.best = dict(tr["partial"]), dict(tr["best"])
    trainer.best_params = arrays.get("train/best_params")
    trainer.history = list(config.get("history", []))
    trainer.finished = tr.get("finished")
