"""The estimator: :class:`VAE`, a :class:`~npvae.core.model.VAEModel` with a scikit-learn-style
surface (``fit``, ``transform``, ``score``), generation, evaluation and persistence.

The training loop lives in :mod:`npvae.training.trainer`, the evaluation maths in
:mod:`npvae.inference.metrics`; this module only wires them to the model.
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.core.activations import ACTIVATIONS, get_activation
from npvae.core.model import VAEModel
from npvae.inference import metrics
from npvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npvae.training.trainer import CHECKPOINT_KIND, Trainer, param_arrays, restore_params

__all__ = ["VAE"]

_CTOR_KEYS = ("input_dim", "latent_dim", "encoder_hidden", "decoder_hidden", "activation",
              "likelihood", "variance", "beta", "n_samples", "free_bits", "cond_dim", "dtype",
              "init", "seed")


class VAE(VAEModel):
    """Variational autoencoder estimator; the constructor is :class:`~npvae.core.model.VAEModel`'s.

    Loss convention: -ELBO per example, **summed over data and latent dimensions and
    averaged over the batch** (nats). :meth:`elbo` and :meth:`score` return the ELBO itself
    (a negative number of nats for discrete data: higher is better).

    ``y`` is the metadata of a conditional model (``cond_dim > 0``). In the scikit-learn
    methods (``fit``, ``transform``, ``fit_transform``, ``score``) it is ignored when the
    model is unconditional, as unsupervised scikit-learn estimators ignore labels, so a
    ``Pipeline`` can pass class labels through.

    Attributes
    ----------
    history_ : list of dict
        Set by ``fit`` (and ``load``). One dict per epoch: ``epoch``, ``train_loss``,
        ``train_recon``, ``train_kl``, ``val_loss``, ``val_recon``, ``val_kl`` (None
        without validation data), ``beta`` and ``lr`` (of the epoch's last step),
        ``seconds``; an epoch cut short by Ctrl-C or a callback is recorded with
        ``"interrupted": True``.
    stop_reason_ : str
        ``"completed"``, ``"early_stopping"``, ``"interrupted"``, ``"callback"`` or
        ``"diverged"``.
    best_epoch_ : int or None
        With early stopping: the epoch whose weights the model holds.
    stop_signal_ : int or None
        The signal (``signal.SIGINT`` or ``signal.SIGTERM``) that interrupted ``fit``.
    """

    def _sk_y(self, y):
        return y if self.cond_dim else None

    # ---------------------------------------------------------------------------- fit
    def fit(self, X, y=None, *, validation_data=None, epochs=10, batch_size=128, lr=1e-3,
            optimizer="adam", lr_schedule=None, kl_warmup_epochs=0, free_bits=None,
            early_stopping_patience=None, clip_norm=None, weight_decay=0.0, seed=None,
            threads=None, binarize=None, checkpoint_path=None, checkpoint_every=1,
            resume=False, progress=True, callbacks=(), warm_start=False, corruption=None,
            corruption_level=0.3, objective="elbo", k=None):
        """Train the model by minibatch stochastic optimisation of -ELBO (or of an
        importance-weighted bound, ``objective=...``).

        Parameters
        ----------
        X : array_like (N, D)
        y : array_like (N, C), optional
            Metadata of a conditional model; ignored when ``cond_dim == 0``.
        validation_data : (X_val,) or (X_val, y_val), optional
            Evaluated after every epoch (forward only, fixed noise, so epochs compare):
            ``val_loss = val_recon + beta * val_kl`` with the model's ``beta`` (minus the
            k-sample bound for an importance-weighted ``objective``).
        epochs : int, default 10
        batch_size : int, default 128
            The last batch of an epoch may be smaller.
        lr : float, default 1e-3
        optimizer : {"adam", "sgd"}, default "adam"
        lr_schedule : {None, "cosine", "step", "exponential"} or callable, default None
            Set every step: ``"cosine"`` anneals from ``lr`` to 0 over the run, ``"step"``
            multiplies by 0.1 at 50 % and again at 75 % of the steps, ``"exponential"``
            decays smoothly to ``0.01 * lr`` at the end; a callable ``f(step, total)``
            returns the multiplier. Schedules depend on ``epochs``.
        kl_warmup_epochs : float, default 0
            The KL weight ramps linearly, step by step, from 0 to ``beta`` over this many
            epochs (recorded as ``beta`` in ``history_``).
        free_bits : float, optional
            Overrides the model's ``free_bits`` during training.
        early_stopping_patience : int, optional
            Stop when ``val_loss`` has not improved for this many epochs (needs
            ``validation_data``). However training ends, the model then holds the weights of
            the best epoch (a checkpoint holds the latest ones, and the best separately).
        clip_norm : float, optional
            Clip the global gradient norm.
        weight_decay : float, default 0
            Decoupled (AdamW) for Adam, L2 for SGD.
        seed : int, optional
            Seeds shuffling, noise and binarisation (default: the model's ``seed``; the
            weights are always initialised from the model's ``seed``).
        threads : int, optional
            Cap BLAS threads (through threadpoolctl, if installed) and Numba threads for
            the run; None leaves both as they are.
        binarize : {None, "stochastic"}
            ``"stochastic"`` re-draws ``Bernoulli(X)`` every epoch (X in [0, 1]); the
            validation data is binarised once, with a fixed seed.
        checkpoint_path : str or PathLike, optional
            Checkpoint file, rewritten atomically every ``checkpoint_every`` epochs, at the
            end, and on Ctrl-C / SIGTERM (then mid-epoch, resumable exactly).
        checkpoint_every : int, default 1
        resume : bool, default False
            Continue from ``checkpoint_path`` if it exists (else start afresh), up to
            ``epochs`` in total. With the same settings, the result equals that of an
            uninterrupted run bit for bit. A run that stopped early is not continued.
        progress : bool, default True
            A tqdm bar per epoch with the running loss, recon and KL.
        callbacks : sequence
            :class:`npvae.training.trainer.Callback` objects, or callables ``f(model, record)``
            called at the end of every epoch.
        warm_start : bool, default False
            Keep the current weights instead of re-initialising them from ``seed``.
        corruption : {None, "mask", "salt-pepper", "gaussian"}, default None
            De-noising training: every step the encoder sees a freshly corrupted copy of
            the batch and the likelihood scores the clean batch. ``"mask"`` zeroes each
            value with probability ``corruption_level``, ``"salt-pepper"`` sets it to 0 or 1
            (equal odds) with that probability, ``"gaussian"`` adds
            ``corruption_level * N(0, 1)``. Drawn from its own seeded generator, which a
            checkpoint saves, so resuming stays exact. ``train_loss`` is then the de-noising
            loss; validation encodes clean data. See :mod:`npvae.training.corruption`.
        corruption_level : float, default 0.3
            Probability (``"mask"``, ``"salt-pepper"``) or noise standard deviation
            (``"gaussian"``).
        objective : {"elbo", "iwae", "iwae-dreg"}, default "elbo"
            ``"iwae"`` trains on the k-sample importance-weighted bound (Burda et al. 2016),
            ``"iwae-dreg"`` on the same bound with the doubly reparameterised encoder
            gradient (Tucker et al. 2019), lower in variance as k grows; see
            :mod:`npvae.core.objectives`. Each step then decodes ``n_samples * k`` samples
            per example: ``n_samples`` (L) independent bounds of ``k`` samples each, averaged
            (L = 1, the default, is plain IWAE). ``beta`` weights ``log p(z) - log q(z|x)`` in
            each log weight; ``free_bits`` must be 0. ``train_loss`` is then minus the bound,
            ``train_recon`` and ``train_kl`` the Monte-Carlo averages over the samples, and
            ``val_loss`` minus the k-sample bound on the validation data (beta = 1).
        k : int, optional
            Importance samples per bound (default 5); only with an importance-weighted
            objective. Saved in the checkpoint with ``objective``, like every training
            setting.

        Returns
        -------
        self

        Raises
        ------
        npvae.training.trainer.TrainingDiverged
            The loss or gradient became NaN/inf; the weights are rolled back to the start
            of that epoch and the last checkpoint is left as it was.
        """
        trainer = Trainer(
            self, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            lr_schedule=lr_schedule, kl_warmup_epochs=kl_warmup_epochs, free_bits=free_bits,
            early_stopping_patience=early_stopping_patience, clip_norm=clip_norm,
            weight_decay=weight_decay, seed=seed, threads=threads, binarize=binarize,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, resume=resume,
            progress=progress, callbacks=callbacks, corruption=corruption,
            corruption_level=corruption_level, objective=objective, k=k)
        try:
            trainer.fit(X, self._sk_y(y), validation_data, reinit=not warm_start)
        finally:
            if hasattr(trainer, "history"):  # training started (arguments and data were ok)
                self.history_ = trainer.history
                self.stop_reason_ = trainer.stop_reason
                self.best_epoch_ = trainer.best["epoch"]
                self.stop_signal_ = trainer.stop_signal
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X, y, **fit_params)`` then ``transform(X, y)``."""
        return self.fit(X, y, **fit_params).transform(X, y)

    # ------------------------------------------------------------------ inference
    def transform(self, X, y=None):
        """Posterior means E_q[z | x], shape (N, Z): the features for a downstream model."""
        return self.encode(X, self._sk_y(y))[0]

    def reconstruct(self, X, y=None):
        """``decode(mu(X))``: the mean of p(x | z = E_q[z]), shape (N, D)."""
        return self.decode(self.encode(X, y)[0], y)

    def denoise(self, X, y=None):
        """``decode(mu(X))`` for a corrupted ``X``: :meth:`reconstruct` without requiring ``X``
        to lie in the likelihood's support (Gaussian noise takes images outside [0, 1]).

        Meant for a model trained with ``fit(..., corruption=...)``, which learned to map
        corrupted inputs to clean reconstructions. Returns the mean of p(x | z), (N, D).
        """
        self._require_built()
        x = chk.as_data(X, self.dtype, "X", dim=self.input_dim)  # shape and finiteness only
        y = self._check_y(y, x.shape[0])
        out = np.empty_like(x)
        for s in self._batches(x.shape[0]):
            out[s] = self.reconstruct_mean(x[s], None if y is None else y[s], check_input=False)
        return out

    def sample(self, n, *, y=None, rng=None, mean=True):
        """Generate ``n`` examples: z ~ N(0, I), then decode.

        Parameters
        ----------
        n : int
        y : array_like (n, C), optional
            Metadata for a conditional model.
        rng : numpy.random.Generator or int, optional
            Default: the model's generator.
        mean : bool, default True
            Return E[x | z] (probabilities for Bernoulli); False draws x ~ p(x | z).
        """
        self._require_built()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = metrics._rng(rng, self)
        z = rng.standard_normal((int(n), self.latent_dim)).astype(self.dtype)
        if mean:
            return self.decode(z, y)
        return self.likelihood.sample(self.decode(z, y, raw=True), rng)

    def elbo(self, X, y=None, *, n_samples=1, rng=None):
        """Per-example ELBO, shape (N,), in nats (beta = 1: the bound on log p(x))."""
        recon, kl = metrics.elbo_terms(self, X, y, n_samples=n_samples, rng=rng)
        return -(recon + kl)

    def score(self, X, y=None):
        """Mean ELBO over ``X`` (higher is better), for scikit-learn model selection."""
        return float(self.elbo(X, self._sk_y(y)).mean())

    def log_likelihood(self, X, y=None, *, k=100, rng=None, batch_size=256):
        """Per-example IWAE estimate of log p(x) with ``k`` importance samples, shape (N,);
        see :func:`npvae.inference.metrics.iwae_log_likelihood`."""
        return metrics.iwae_log_likelihood(self, X, y, k=k, rng=rng, batch_size=batch_size)

    # ----------------------------------------------------------------- persistence
    def save(self, path):
        """Write the weights, the constructor config and ``history_`` to one ``.npz`` file
        (atomically; see :mod:`npvae.training.checkpoint`). Reload with :meth:`VAE.load`."""
        self._require_built()
        config = {**self.config(), "history": list(getattr(self, "history_", []))}
        save_checkpoint(path, param_arrays(self), config, kind=CHECKPOINT_KIND)

    @classmethod
    def load(cls, path, *, backend=None, best=True):
        """Rebuild a model from :meth:`save` (or from a training checkpoint).

        Parameters
        ----------
        path : str or path-like
        backend : {"numba", "numpy"}, optional
        best : bool, default True
            A training checkpoint of a run with early stopping holds the latest weights
            and, apart, the best epoch's. With ``best=True`` the model gets the best
            epoch's, as :meth:`fit` leaves it (not after a run that diverged, whose best
            weights were never restored); ``best=False`` gives the latest.

        Raises
        ------
        npvae.training.checkpoint.CheckpointError
            The file is damaged, or its arrays do not fit the model its config describes.
        """
        arrays, config, _ = load_checkpoint(path, kind=CHECKPOINT_KIND)
        kwargs = {k: config[k] for k in _CTOR_KEYS if k in config}
        if kwargs.get("input_dim") is None:
            raise CheckpointError(f"{path}: config has no input_dim; not a saved VAE")
        act = kwargs.get("activation")
        if isinstance(act, dict):  # an Activation instance saved as {name, param}
            c = ACTIVATIONS[act["name"]]
            kwargs["activation"] = c(act["param"]) if act.get("param") else c()
        else:
            get_activation(act)
        try:
            model = cls(**kwargs, backend=backend)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its config does not build a model: {exc}") from exc
        restore_params(model, arrays, path)
        kept = arrays.get("train/best_params")
        if best and kept is not None \
                and (config.get("training") or {}).get("finished") != "diverged":
            if kept.shape != model.params.data.shape:
                raise CheckpointError(f"{path}: its best weights do not fit the model")
            model.params.data[...] = kept
        model.history_ = list(config.get("history", []))
        return model
