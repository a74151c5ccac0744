"""The training loop of :class:`~npvae.training.semisupervised.SemiSupervisedVAE` and its
batches: the few labelled rows cycled beside each batch of unlabelled ones, and each row's
weight in the step's loss (see ``SemiSupervisedVAE.fit``).
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from npvae.core import checks as chk
from npvae.core.optim import Adam
from npvae.training.trainer import TrainingDiverged, thread_limits

__all__ = ["run", "balanced_labels", "LabelStream"]


def run(model, X, y, val, test, *, epochs, batch_size, labelled_batch_size, lr,
        weight_decay, clip_norm, patience, seed, threads, progress, callbacks, weighting):
    """Train ``model`` (a SemiSupervisedVAE whose core is built and ``alpha_`` set) on ``X``
    and labels ``y`` (-1: unlabelled), appending one record per epoch to
    ``model.history_``; leave it holding the weights of the best validation epoch."""
    core = model._core
    lab, unl = np.flatnonzero(y >= 0), np.flatnonzero(y < 0)
    n, nl, nu = len(X), len(lab), len(unl)
    bu, bl = batch_size, labelled_batch_size
    r_unl, r_lab, r_noise = (np.random.default_rng(s) for s in
                             np.random.SeedSequence([seed, 0x4D32]).spawn(3))
    opt = Adam(core.params, lr=lr, weight_decay=weight_decay, clip_norm=clip_norm,
               backend=core.backend)
    stream = LabelStream(lab, r_lab)
    share_l, share_u = (nl / n, nu / n) if weighting == "dataset" else (1.0, 1.0)
    spe = -(-nu // bu) if nu else -(-nl // bl)  # steps per epoch
    best, best_params, bad = -1.0, None, 0
    bar = tqdm(total=epochs * spe, unit="step", disable=not progress, leave=True)
    with thread_limits(threads), bar:
        for e in range(epochs):
            t0, snapshot = time.perf_counter(), core.params.data.copy()
            perm = r_unl.permutation(unl)
            sums = dict.fromkeys(("loss", "ce", "entropy", "kl", "recon"), 0.0)
            bar.set_description(f"epoch {e + 1}/{epochs}")
            for b in range(spe):
                ub, lb = perm[b * bu:(b + 1) * bu], stream.take(bl)
                idx = np.concatenate([lb, ub])
                w = np.full(len(idx), (share_l if nu else 1.0) / bl)
                if nu:  # a smaller last batch: its rows weigh more, their sum stays the same
                    w[len(lb):] = share_u / len(ub)
                loss, parts = core.loss_and_grad(X[idx], y[idx], alpha=model.alpha_,
                                                 sample_weight=w, rng=r_noise,
                                                 check_input=False)
                if not np.isfinite(loss):
                    core.params.data[...] = snapshot
                    raise TrainingDiverged(
                        f"the loss became {loss} at epoch {e + 1}, step {b + 1}; the model "
                        f"was rolled back to the start of the epoch. Lower lr (now {lr:g}) "
                        "or set clip_norm=...")
                opt.step()
                for key in sums:
                    sums[key] += (loss if key == "loss" else parts[key] or 0.0) / spe
                bar.update(1)
            rec = {"epoch": e + 1, **sums,
                   "val_accuracy": None if val is None else model.score(*val),
                   "test_accuracy": None if test is None else model.score(*test),
                   "seconds": time.perf_counter() - t0}
            model.history_.append(rec)
            bar.set_postfix({k: f"{rec[k]:.4g}" for k in ("loss", "ce", "val_accuracy",
                                                           "test_accuracy")
                             if rec[k] is not None}, refresh=False)
            if val is not None:
                if rec["val_accuracy"] > best:
                    best, best_params, bad = rec["val_accuracy"], core.params.data.copy(), 0
                    model.best_epoch_ = e + 1
                else:
                    bad += 1
            stop = any(cb(model, rec) for cb in callbacks)
            if stop or (patience is not None and bad >= patience):
                break
    if best_params is not None:
        core.params.data[...] = best_params


def balanced_labels(y, n_labels, rng):
    """Keep ``n_labels`` labels, ``n_labels / K`` of each class drawn at random with ``rng``,
    and mark every other row unlabelled (-1). Returns a new int64 array.

    ``n_labels`` must be a multiple of the number of classes K, and no larger than K times
    the size of the smallest class.
    """
    y = np.asarray(y, dtype=np.int64)
    classes = np.unique(y[y >= 0])
    k = len(classes)
    n_labels = chk.positive_int(n_labels, "n_labels")
    if k < 2 or n_labels % k:
        raise ValueError(f"n_labels={n_labels} must be a multiple of the {k} classes, so that "
                         f"every class gets the same number; try {max(k, n_labels // k * k)}")
    per = n_labels // k
    out = np.full(len(y), -1, dtype=np.int64)
    for c in classes:
        rows = np.flatnonzero(y == c)
        if len(rows) < per:
            raise ValueError(f"class {c} has only {len(rows)} rows, fewer than the {per} "
                             f"labels per class that n_labels={n_labels} asks for")
        keep = rng.choice(rows, size=per, replace=False)
        out[keep] = c
    return out


class LabelStream:
    """Endless stream over ``rows``, reshuffled with ``rng`` at every pass."""

    def __init__(self, rows, rng):
        self.rows, self.rng, self.queue = rows, rng, np.empty(0, np.int64)

    def take(self, n):
        while len(self.queue) < n:
            self.queue = np.concatenate([self.queue, self.rng.permutation(self.rows)])
        out, self.queue = self.queue[:n], self.queue[n:]
        return out
