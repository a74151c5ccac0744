"""The training loop: batches, schedules, KL warm-up, validation, early stopping,
checkpoints, resume, Ctrl-C and divergence handling.

Reproducibility. Four generators drive a run, derived from one seed with
``SeedSequence([seed, 0x6E70]).spawn(5)``: shuffling, reparameterisation noise,
stochastic binarisation and, the fifth, the corruption of the encoder's input in a
de-noising run (``corruption=...``; the fourth is unused). Validation draws its noise from
a generator re-created every epoch from :data:`npvae.inference.metrics.EVAL_SEED`, so that
epochs compare and the last one equals ``VAE.score`` and ``npvae eval`` on the same data.
The same seed on the same machine gives bit-identical parameters.

Resume. A checkpoint holds the parameters, the optimizer state (Adam's m, v, t), the
RNG states, the epoch and step counters, the history and, mid-epoch, the running sums of
the epoch. Shuffling and binarisation draw once per epoch, so the checkpoint stores their
states *at the start of the epoch* and the noise and corruption states *now*: resuming
redraws the same permutation and binary data, skips the steps already taken and
continues, so a resumed run (from an epoch boundary or from a Ctrl-C mid-epoch) equals an
uninterrupted one bit for bit, provided the same training settings (``epochs`` too when an
lr schedule is used).

Data parallelism. With ``comm=`` (an mpi4py communicator) the same loop runs on every rank,
each on its shard of every batch; :mod:`npvae.training.distributed` holds what differs.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from npvae.core import checks as chk
from npvae.core.objectives import check_objective
from npvae.core.optim import SGD, Adam
from npvae.inference.metrics import EVAL_SEED, elbo_terms, iwae_log_likelihood
from npvae.training.checkpoint import (  # noqa: F401 (param_arrays, restore_params: read here)
    CHECKPOINT_KIND,
    param_arrays,
    restore_params,
    save_checkpoint,
)
from npvae.training.corruption import CORRUPTIONS, check_corruption, corrupt
from npvae.training.distributed import DataParallel
from npvae.training.interrupts import Interrupts, TrainingDiverged
from npvae.training.resume import STRUCTURE_KEYS, TrainingState  # noqa: F401
from npvae.training.schedules import LR_SCHEDULES, lr_factor, thread_limits

__all__ = ["Trainer", "TrainingDiverged", "Callback", "OPTIMIZERS", "LR_SCHEDULES",
           "lr_factor", "thread_limits", "CHECKPOINT_KIND", "FIT_DEFAULTS"]

# The training defaults of VAE.fit and of `npvae train`: one set, which the CLI reads here
FIT_DEFAULTS = {"epochs": 24, "batch_size": 128, "lr": 3e-3, "lr_schedule": "cosine"}
OPTIMIZERS = {"adam": Adam, "sgd": SGD}


class Callback:
    """Base class of training callbacks; override any hook. Set ``trainer.stop_training``
    to stop after the current step (a checkpoint is written as for Ctrl-C).

    ``epoch`` counts from 1, as ``record["epoch"]``, ``history_`` and metrics.jsonl do;
    ``step`` in ``on_step_end`` is the number of steps taken so far (1 after the first)."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_step_end(self, trainer, step, parts):
        pass

    def on_epoch_end(self, trainer, epoch, record):
        pass

    def on_train_end(self, trainer):
        pass


class Trainer(TrainingState, Interrupts):
    """Runs :meth:`npvae.training.estimator.VAE.fit`; see that method for every argument.

    After :meth:`fit`, ``history`` holds one dict per epoch and ``stop_reason`` is one of
    ``"completed"``, ``"early_stopping"``, ``"interrupted"``, ``"callback"`` or ``"diverged"``.
    """

    def __init__(self, model, *, epochs=FIT_DEFAULTS["epochs"],
                 batch_size=FIT_DEFAULTS["batch_size"], lr=FIT_DEFAULTS["lr"], optimizer="adam",
                 lr_schedule=FIT_DEFAULTS["lr_schedule"], kl_warmup_epochs=0, free_bits=None,
                 early_stopping_patience=None, clip_norm=None, weight_decay=0.0, seed=None,
                 threads=None, binarize=None, checkpoint_path=None, checkpoint_every=1,
                 resume=False, progress=True, callbacks=(), corruption=None,
                 corruption_level=0.3, objective="elbo", k=None, comm=None):
        self.model = model
        self.epochs = chk.positive_int(epochs, "epochs")
        self.batch_size = chk.positive_int(batch_size, "batch_size")
        self.lr = chk.positive_float(lr, "lr")
        self.optimizer_name = chk.choice(optimizer, "optimizer", tuple(OPTIMIZERS))
        if not callable(lr_schedule):
            chk.choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
        self.lr_schedule = lr_schedule
        self.kl_warmup_epochs = chk.nonnegative_float(kl_warmup_epochs, "kl_warmup_epochs")
        self.free_bits = None if free_bits is None else chk.nonnegative_float(free_bits,
                                                                              "free_bits")
        self.patience = None if early_stopping_patience is None else chk.positive_int(
            early_stopping_patience, "early_stopping_patience")
        self.clip_norm = None if clip_norm is None else chk.positive_float(clip_norm,
                                                                           "clip_norm")
        self.weight_decay = chk.nonnegative_float(weight_decay, "weight_decay")
        self.objective, self.k = check_objective(objective, k)
        self._objective_kw = {} if self.objective == "elbo" else {"objective": self.objective,
                                                                  "k": self.k}
        if self.objective != "elbo" and (model.free_bits if free_bits is None else free_bits):
            raise ValueError(f"free bits hold the closed-form KL of the ELBO per dimension; "
                             f"objective={self.objective!r} has no such KL: set free_bits=0")
        self.seed = chk.seed(model.seed if seed is None else seed)
        self.threads = None if threads is None else chk.positive_int(threads, "threads")
        self.dist = None  # data-parallel over MPI (npvae.training.distributed)
        if comm is not None:
            self.dist = comm if isinstance(comm, DataParallel) else DataParallel(comm)
            if threads is None:  # one process per core, not every process on every core
                self.threads = self.dist.default_threads()
        self.binarize = chk.choice(binarize, "binarize", (None, "stochastic"))
        chk.choice(corruption, "corruption", (None, *CORRUPTIONS))
        self.corruption = corruption
        self.corruption_level = (None if corruption is None
                                 else check_corruption(corruption, corruption_level)[1])
        self.checkpoint_path = chk.path_or_none(checkpoint_path, "checkpoint_path")
        self.checkpoint_every = chk.positive_int(checkpoint_every, "checkpoint_every")
        self.resume = chk.flag(resume, "resume")
        if resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path=... (the file to resume from)")
        self.progress = chk.flag(progress, "progress")
        self.callbacks = chk.callbacks(callbacks)
        self.stop_training = False

    # ------------------------------------------------------------------------- state
    def _settings(self):
        sched = self.lr_schedule if not callable(self.lr_schedule) else "callable"
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "optimizer": self.optimizer_name, "lr_schedule": sched,
                "kl_warmup_epochs": self.kl_warmup_epochs, "free_bits": self.free_bits,
                "clip_norm": self.clip_norm, "weight_decay": self.weight_decay,
                "binarize": self.binarize, "corruption": self.corruption,
                "corruption_level": self.corruption_level, "seed": self.seed,
                "objective": self.objective, "k": self.k}

    def _reset(self):
        m = self.model
        cls = OPTIMIZERS[self.optimizer_name]
        self.opt = cls(m.params, lr=self.lr, weight_decay=self.weight_decay,
                       clip_norm=self.clip_norm, backend=m.backend)
        ss = np.random.SeedSequence([self.seed, 0x6E70]).spawn(5)  # the first 4 as spawn(4)
        self.rng_shuffle, self.rng_noise, self.rng_binarize = (np.random.default_rng(s)
                                                               for s in ss[:3])
        self.rng_corrupt = np.random.default_rng(ss[4])
        self.epoch = self.step = self.step_in_epoch = 0
        self.partial = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "rows": 0, "seconds": 0.0}
        self.best = {"val": None, "epoch": None, "bad_epochs": 0}
        self.best_params = None
        self.history = []
        self.finished = self.stop_reason = None
        self._epoch_start_states = None

    @property
    def is_root(self):
        """True on MPI rank 0, and without MPI: the process that writes files and shows bars."""
        return self.dist is None or self.dist.is_root

    def _save(self):
        if self.checkpoint_path is not None and self.is_root:
            arrays, config = self._state()
            save_checkpoint(self.checkpoint_path, arrays, config, kind=CHECKPOINT_KIND)
            self._saved_at = (self.epoch, self.step_in_epoch)


    # --------------------------------------------------------------------------- fit
    def fit(self, X, y=None, validation_data=None, *, reinit=True):
        """Train ``self.model`` on ``X`` (and metadata ``y``); return the history."""
        m = self.model
        x0 = chk.as_data(X, chk.float_dtype(m.dtype), "X")  # the dtype may be unchecked yet
        val = self._validation(validation_data)
        if self.patience is not None and val is None:
            raise ValueError("early_stopping_patience needs validation_data=(X_val,) or "
                             "(X_val, y_val)")
        if reinit or m.params is None:
            m.build(x0.shape[1])  # the model's own memory is checked as it is built
        core = m._model() if hasattr(m, "_model") else m  # a VAE holds a VAEModel
        core.check_memory(core.input_dim, min(self.batch_size, x0.shape[0]))
        X, y = m.check_input(x0, y, x_name="X")
        if val is not None:
            val = m.check_input(val[0], val[1], x_name="X_val", y_name="y_val")
        if self.binarize and (X.min() < 0 or X.max() > 1):
            raise ValueError("binarize='stochastic' draws Bernoulli(X) and needs X in [0, 1]")
        self._reset()
        self._saved_at = None
        with self._collective():
            if self.dist is not None:  # same data and settings everywhere, rank 0's weights
                self.dist.setup(self, X, y, val)
            if self.resume:
                self._load(self.checkpoint_path)
        if val is not None and self.binarize:  # binarised once, so epochs are comparable
            rb = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6E70, 1]))
            val = ((rb.random(val[0].shape, dtype=m.dtype) < val[0]).astype(m.dtype), val[1])
        self.stop_training, self._signal = False, None
        with thread_limits(self.threads), self._signal_guard(), self._collective(signals=True):
            self._call("on_train_begin")
            try:
                self._run(X, y, val)
            finally:
                if self.best_params is not None and self.finished != "diverged":
                    m.params.data[...] = self.best_params
                self._call("on_train_end")
        return self.history

    def _validation(self, validation_data):
        if validation_data is None:
            return None
        if isinstance(validation_data, np.ndarray):
            validation_data = (validation_data,)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (1, 2):
            raise ValueError("validation_data must be (X_val,) or (X_val, y_val)")
        xv, yv = (list(validation_data) + [None])[:2]
        return xv, (yv if self.model.cond_dim else None)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)
            elif hook == "on_epoch_end" and callable(cb):
                cb(self.model, args[1])

    def _run(self, X, y, val):
        spe = -(-X.shape[0] // self.batch_size)  # steps per epoch
        self.stop_reason = self.finished or "completed"  # a finished run has nothing to do
        while self.epoch < self.epochs and self.stop_reason == "completed":
            e = self.epoch
            rec = self._epoch(X, y, val, spe)
            if rec is None:  # stopped mid-epoch: _epoch saved and recorded it
                return
            self.history.append(rec)
            self.epoch, self.step_in_epoch = e + 1, 0
            if self.patience is not None:
                self._early_stopping(rec)
            self._call("on_epoch_end", e + 1, rec)  # 1-based, as rec["epoch"]
            if self.dist is not None:  # every rank stops after the same epoch, or none
                self.dist.check_in_sync(self, f"the end of epoch {e + 1}", agree=True)
            if self._signal is not None or self.stop_training:
                self.stop_reason = "interrupted" if self._signal is not None else "callback"
            elif self.finished == "early_stopping":
                self.stop_reason = "early_stopping"
            saved = (self.epoch == self.epochs or self.stop_reason != "completed"
                     or self.epoch % self.checkpoint_every == 0)
            if saved:
                self._save()
            if self._signal is not None and self.stop_reason == "completed":
                # the signal came during the callbacks or the save: the epoch is complete
                # (never marked interrupted); stop here, with a checkpoint of this boundary
                self.stop_reason = "interrupted"
                if not saved:
                    self._save()

    def _epoch(self, X, y, val, spe):
        """Run (the rest of) one epoch; return its record, or None if it was cut short."""
        m, e, bs = self.model, self.epoch, self.batch_size
        total, warm = self.epochs * spe, self.kl_warmup_epochs * spe
        self._epoch_start_states = (self.rng_shuffle.bit_generator.state,
                                    self.rng_binarize.bit_generator.state)
        perm = self.rng_shuffle.permutation(X.shape[0])
        if self.binarize:
            X = (self.rng_binarize.random(X.shape, dtype=m.dtype) < X).astype(m.dtype)
        if self.step_in_epoch == 0:
            self.partial = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "rows": 0, "seconds": 0.0}
        snapshot = (m.params.data.copy(), self.opt.state_dict())  # the rollback target
        self._call("on_epoch_begin", e + 1)
        p, t0 = self.partial, time.perf_counter() - self.partial["seconds"]
        bar = tqdm(total=spe, initial=self.step_in_epoch, desc=f"epoch {e + 1}/{self.epochs}",
                   unit="step", disable=not (self.progress and self.is_root), leave=True)
        with bar:
            for b in range(self.step_in_epoch, spe):
                idx = mine = perm[b * bs:(b + 1) * bs]
                if self.dist is not None:  # this rank's shard of the global batch
                    mine = idx[self.dist.shard(len(idx))]
                yb = None if y is None else np.take(y, mine, axis=0)
                beta = m.beta * (min(1.0, self.step / warm) if warm > 0 else 1.0)
                lr = self.opt.lr = self.lr * lr_factor(self.lr_schedule, self.step, total)
                xb, target = np.take(X, mine, axis=0), None
                if self.corruption is not None:  # encode a corrupted copy, score the clean one
                    xb, target = self._corrupt(X, idx, xb), xb
                kw = {"beta": beta, "free_bits": self.free_bits, "target": target,
                      "check_input": False, **self._objective_kw}
                try:  # the step the benchmark times; a non-finite loss makes no update
                    if self.dist is None:
                        loss, parts = m.train_step(xb, self.opt, yb, rng=self.rng_noise, **kw)
                    else:  # the global batch's loss, on every rank
                        loss, parts = self.dist.train_step(self, xb, yb, len(idx), **kw)
                except FloatingPointError as exc:
                    self._diverge(snapshot, str(exc))
                self.step += 1
                self.step_in_epoch += 1
                for key, v in (("loss", loss), ("recon", parts["recon"]), ("kl", parts["kl"])):
                    p[key] += v * len(idx)
                p["rows"] += len(idx)
                self._call("on_step_end", self.step, parts)
                bar.update(1)
                if self.progress:
                    bar.set_postfix({k: f"{p[k] / p['rows']:.4g}" for k in ("loss", "recon", "kl")},
                                    refresh=False)
                if self._stop_requested():
                    break
            p["seconds"] = time.perf_counter() - t0
            if self.step_in_epoch < spe:
                self.stop_reason = "interrupted" if self._signal is not None else "callback"
                self._save()  # mid-epoch state, before the partial record joins the history
                rec = {**self._record(e, beta, lr, None), "interrupted": True}
                self.history = self.history + [rec]
                return None
            if not np.all(np.isfinite(m.params.data)):  # never checkpoint NaN weights
                self._diverge(snapshot, "the parameters became NaN or inf", True)
            try:
                rec = self._record(e, beta, lr, val)
            except (ValueError, FloatingPointError):  # the forward's checks met NaN/inf
                self._diverge(snapshot, "the validation pass met NaN or inf (the weights are "
                              "finite but so large that the networks' outputs overflow)", True)
            bad = [k for k in ("train_loss", "val_loss") if rec[k] is not None
                   and not np.isfinite(rec[k])]
            if bad:
                self._diverge(snapshot, f"{' and '.join(bad)} became {rec[bad[0]]} (the "
                              "weights are finite but too large)", True)
            bar.set_postfix({k: f"{rec[k]:.4g}" for k in ("train_loss", "val_loss")
                             if rec[k] is not None}, refresh=True)
        return rec

    def _corrupt(self, X, idx, xb):
        """The corrupted copy of the batch ``xb``; under MPI drawn for the whole global
        batch ``idx`` (so every P draws the same) and cut to this rank's shard."""
        if self.dist is None:
            return corrupt(xb, self.corruption, self.corruption_level, self.rng_corrupt)
        whole = corrupt(np.take(X, idx, axis=0), self.corruption, self.corruption_level,
                        self.rng_corrupt)
        return whole[self.dist.shard(len(idx))]

    def _record(self, e, beta, lr, val):
        p = self.partial
        r = max(p["rows"], 1)
        rec = {"epoch": e + 1, "train_loss": p["loss"] / r, "train_recon": p["recon"] / r,
               "train_kl": p["kl"] / r, "val_loss": None, "val_recon": None, "val_kl": None,
               "beta": float(beta), "lr": float(lr), "seconds": p["seconds"]}
        if val is not None and self.dist is not None:  # sharded over the ranks
            recon, kl, loss = self.dist.validation(self.model, val, EVAL_SEED)
            rec.update(val_recon=recon, val_kl=kl, val_loss=loss)
        elif val is not None:
            m = self.model
            recon, kl = elbo_terms(m, val[0], val[1], n_samples=m.n_samples,
                                   rng=np.random.default_rng(EVAL_SEED))
            rec.update(val_recon=float(recon.mean()), val_kl=float(kl.mean()),
                       val_loss=float(np.mean(recon + m.beta * kl)))
        if val is not None and self.objective != "elbo":  # the bound trained on (beta = 1);
            # with MPI every rank computes it whole, so all agree
            ll = iwae_log_likelihood(self.model, val[0], val[1], k=self.k,
                                     rng=np.random.default_rng(EVAL_SEED))
            rec["val_loss"] = -float(ll.mean())
        return rec

    def _early_stopping(self, rec):
        b = self.best
        if b["val"] is None or rec["val_loss"] < b["val"]:
            b.update(val=rec["val_loss"], epoch=rec["epoch"], bad_epochs=0)
            self.best_params = self.model.params.data.copy()
        else:
            b["bad_epochs"] += 1
            if b["bad_epochs"] >= self.patience:
                self.finished = "early_stopping"
