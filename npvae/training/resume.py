"""The training checkpoint of a :class:`~npvae.training.trainer.Trainer`: the state it
writes (parameters, optimizer, RNG states, counters, history, the running sums of an
interrupted epoch) and how a run resumes from it, checked before any array is read (see
"Resume" in :mod:`npvae.training.trainer`)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from npvae.training import schema
from npvae.training.checkpoint import (
    CHECKPOINT_KIND,
    CheckpointError,
    likelihood_name,
    load_checkpoint,
    param_arrays,
    restore_params,
)
from npvae.training.distributed import resize_note

# constructor arguments that change the parameter layout or the noise shape
STRUCTURE_KEYS = ("input_dim", "latent_dim", "encoder_hidden", "decoder_hidden", "activation",
                  "likelihood", "cond_dim", "dtype", "n_samples")
# fit arguments that must match for a resumed run to equal an uninterrupted one
_REPLAY_KEYS = ("batch_size", "lr", "optimizer", "lr_schedule", "kl_warmup_epochs",
                "free_bits", "clip_norm", "weight_decay", "binarize", "corruption",
                "corruption_level", "objective", "k")
_REPLAY_DEFAULTS = {"objective": "elbo", "k": 1}  # what older checkpoints, lacking them, used


class TrainingState:
    """The checkpoint half of :class:`~npvae.training.trainer.Trainer` (a base class of it):
    :meth:`_state` is what ``Trainer._save`` writes; :meth:`_load` resumes from a file."""

    def _state(self):
        """(arrays, config) of a checkpoint of the current training state."""
        m, opt = self.model, self.opt
        sd = opt.state_dict()
        arrays = dict(param_arrays(m))
        arrays.update({f"optim/{k}": v for k, v in sd.items() if isinstance(v, np.ndarray)})
        if self.best_params is not None:
            arrays["train/best_params"] = self.best_params
        if self.step_in_epoch == 0:
            shuffle, binar = self.rng_shuffle.bit_generator.state, \
                self.rng_binarize.bit_generator.state
        else:
            shuffle, binar = self._epoch_start_states
        training = {
            "epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
            "seed": self.seed, "settings": self._settings(), "finished": self.finished,
            "rng": {"shuffle": shuffle, "noise": self.rng_noise.bit_generator.state,
                    "binarize": binar, "corrupt": self.rng_corrupt.bit_generator.state},
            "partial": dict(self.partial), "best": dict(self.best),
            "optimizer": {k: v for k, v in sd.items() if not isinstance(v, np.ndarray)},
            "world_size": self._world_size(),
        }
        return arrays, {**m.config(), "history": self.history, "training": training}

    def _world_size(self):
        return 1 if self.dist is None else self.dist.size

    def _check_resumable(self, meta, path):
        """Before any array is read: the config describes this model and a valid state."""
        config = meta["config"]
        if config.get("training") is None:
            raise CheckpointError(f"{path} holds a saved model without training state, so "
                                  "it cannot be resumed; load it with VAE.load instead")
        schema.model_kwargs(config, path)
        schema.check_history(config.get("history", []), path)
        schema.check_training(config["training"], path)
        mine = self.model.config()
        config = {**config, "likelihood": likelihood_name(config)}  # either form: by name
        mine["likelihood"] = likelihood_name(mine)
        diff = [f"{k}: checkpoint {config.get(k)!r:.40}, model {mine[k]!r}"
                for k in STRUCTURE_KEYS if config.get(k) != mine[k]]
        if diff:
            raise CheckpointError(f"{path} was written by a different model; "
                                  + "; ".join(diff))
        core = self.model._model() if hasattr(self.model, "_model") else self.model
        schema.check_manifest_fits(core, meta, path)

    def _read(self, path):
        """``(arrays, config)`` of the checkpoint at ``path``, or None if there is no file;
        its config is checked (:meth:`_check_resumable`) before any array is read."""
        if not os.path.exists(path):
            return None
        return load_checkpoint(path, kind=CHECKPOINT_KIND,
                               check=lambda meta: self._check_resumable(meta, path))[:2]

    def _load(self, path):
        """Resume from ``path`` if it exists (under MPI: rank 0 reads, every rank restores)."""
        if self.dist is not None:
            self.dist.resume(path, lambda: self._read(path), self._restore)
        elif os.path.exists(path):
            self._restore(*self._read(path), path)

    def _restore(self, arrays, config, path):
        try:
            self._restore_state(arrays, config, path)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, CheckpointError) or "resume with the same" in str(exc):
                raise
            raise CheckpointError(f"{path}: its training state cannot be restored "
                                  f"({' '.join(str(exc).split())}); the file is damaged") \
                from None

    def _restore_state(self, arrays, config, path):
        tr = config["training"]
        restore_params(self.model, arrays, path)
        old = tr["settings"]
        if old["optimizer"] != self.optimizer_name:
            raise CheckpointError(f"{path} was trained with optimizer={old['optimizer']!r}, "
                                  f"not {self.optimizer_name!r}; pass the same optimizer")
        if tr["step_in_epoch"] and old["batch_size"] != self.batch_size:
            raise ValueError(f"{path} was interrupted mid-epoch with batch_size="
                             f"{old['batch_size']}; resume with the same batch_size")
        new = self._settings()
        changed = [k for k in _REPLAY_KEYS if old.get(k, _REPLAY_DEFAULTS.get(k)) != new[k]]
        if self.lr_schedule is not None and old["epochs"] != self.epochs:
            changed.append("epochs (the lr schedule depends on it)")
        if changed:
            warnings.warn(f"resuming {path} with different {', '.join(changed)}; the run "
                          "will not reproduce an uninterrupted one", stacklevel=4)
        if tr.get("world_size", 1) != self._world_size():
            warnings.warn(f"{path}: {resize_note(tr.get('world_size', 1), self._world_size())}",
                          stacklevel=4)
        self.seed = int(tr["seed"])
        self._reset()
        state = {**tr["optimizer"], **{k[6:]: a for k, a in arrays.items()
                                       if k.startswith("optim/")}}
        self.opt.load_state_dict(state)
        self.opt.clip_norm, self.opt.weight_decay = self.clip_norm, self.weight_decay
        for name in ("shuffle", "noise", "binarize", "corrupt"):
            if name in tr["rng"]:  # "corrupt" is absent from older checkpoints
                getattr(self, f"rng_{name}").bit_generator.state = tr["rng"][name]
        self.epoch, self.step = int(tr["epoch"]), int(tr["step"])
        self.step_in_epoch = int(tr["step_in_epoch"])
        self.partial, self.best = dict(tr["partial"]), dict(tr["best"])
        self.best_params = arrays.get("train/best_params")
        self.history = list(config.get("history", []))
        self.finished = tr.get("finished")
        self._saved_at = (self.epoch, self.step_in_epoch)
