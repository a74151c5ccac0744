"""The estimator: :class:`VAE`, a :class:`~npvae.core.model.VAEModel` with a scikit-learn-style
surface (``fit``, ``transform``, ``score``), generation, evaluation and persistence.

The training loop lives in :mod:`npvae.training.trainer`, the evaluation maths in
:mod:`npvae.inference.metrics`; this module only wires them to the model.
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.core import memory
from npvae.core.model import VAEModel
from npvae.inference import metrics
from npvae.training import persistence, schema
from npvae.training.checkpoint import (
    CHECKPOINT_KIND,
    CheckpointError,
    param_arrays,
    restore_params,
    save_checkpoint,
)
from npvae.training.protocol import EstimatorMixin, ModelState, NotFittedError, Param
from npvae.training.trainer import FIT_DEFAULTS, Trainer

__all__ = ["VAE", "NotFittedError"]

_CTOR_KEYS = ("input_dim", "latent_dim", "encoder_hidden", "decoder_hidden", "activation",
              "likelihood", "variance", "beta", "n_samples", "free_bits", "cond_dim", "dtype",
              "init", "seed")
# what the core VAEModel keeps on itself besides its constructor arguments; a VAE reads and
# writes these on its built model (tests/test_sklearn.py checks the list is complete)
MODEL_STATE = ("kernels", "params", "encoder", "decoder", "rng", "_workspaces")


class VAE(EstimatorMixin, VAEModel):
    """Variational autoencoder estimator, following scikit-learn's protocol.

    Parameters are :class:`~npvae.core.model.VAEModel`'s. The constructor only stores them
    (scikit-learn's rule: ``get_params``, ``set_params``, ``sklearn.base.clone`` work on
    them as passed); they are validated, and the networks built, by :meth:`fit` or by the
    first call that needs weights: with ``input_dim`` given, ``VAE(input_dim=64).params``
    and ``vae.loss_and_grad(x)`` work at once. Once built, reading an attribute such as
    ``vae.likelihood`` or ``vae.dtype`` gives the built model's value (a Likelihood object,
    a NumPy dtype) and ``get_params()`` the argument; a parameter set after building takes
    effect at the next ``fit``. See :mod:`npvae.training.protocol`.

    Loss convention: -ELBO per example, **summed over data and latent dimensions and
    averaged over the batch** (nats). :meth:`elbo` and :meth:`score` return the ELBO itself
    (a negative number of nats for discrete data: higher is better).

    ``y`` is the metadata of a conditional model (``cond_dim > 0``). In the scikit-learn
    methods (``fit``, ``transform``, ``fit_transform``, ``score``) it is ignored when the
    model is unconditional, as unsupervised scikit-learn estimators ignore labels, so a
    ``Pipeline`` can pass class labels through. ``transform`` and ``fit_transform`` return
    the dtype of a float32 or float64 ``X`` (the model computes in its own ``dtype``).

    Every model pickles, deep-copies and goes through joblib, fitted or not (the compiled
    kernels are looked up again by backend name on unpickling); :meth:`save` writes the
    safe, pickle-free format for files that may come from elsewhere.

    Attributes
    ----------
    n_features_in_ : int
        The data dimension of the built model.
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

    def __init__(self, input_dim=None, latent_dim=20, hidden=(400,), *, encoder_hidden=None,
                 decoder_hidden=None, activation="relu", likelihood="bernoulli", variance=1.0,
                 beta=1.0, n_samples=1, free_bits=0.0, cond_dim=0, dtype="float32",
                 init="auto", seed=0, backend=None):
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.encoder_hidden = encoder_hidden
        self.decoder_hidden = decoder_hidden
        self.activation = activation
        self.likelihood = likelihood
        self.variance = variance
        self.beta = beta
        self.n_samples = n_samples
        self.free_bits = free_bits
        self.cond_dim = cond_dim
        self.dtype = dtype
        self.init = init
        self.seed = seed
        self.backend = backend

    # ----------------------------------------------------------------- the built model
    def _model(self, input_dim=None):
        """The VAEModel built from the parameters: made (validating them) on first need,
        and built for ``input_dim`` (default: the ``input_dim`` parameter) when given."""
        core = self.__dict__.get("_core")
        if core is None or input_dim is not None:
            kwargs = self.get_params()
            if input_dim is not None:
                given = kwargs["input_dim"]
                d = chk.positive_int(input_dim, "input_dim")
                if given is not None and given != d:
                    raise ValueError(f"X has {d} features, but {type(self).__name__} is "
                                     f"expecting {given} features as input (input_dim="
                                     f"{given}); pass data of that width or input_dim=None")
                kwargs["input_dim"] = d
            core = VAEModel(**kwargs)
            self.__dict__["_core"] = core
        return core

    def build(self, input_dim):
        """Validate the parameters and build fresh networks for data of dimension
        ``input_dim`` (weights from ``seed``); return self."""
        self._model(input_dim)
        return self

    def _require_built(self):
        if self._model().params is None:
            raise NotFittedError(f"this {type(self).__name__} has no weights yet: call fit(X) "
                                 "first (or pass input_dim=...)")

    def __repr__(self):
        return VAEModel.__repr__(self) if self._built() else self._params_repr()

    # the training step runs on the model itself (no attribute forwarding in the hot loop)
    def loss_and_grad(self, x, y=None, **kwargs):
        return self._model().loss_and_grad(x, y, **kwargs)

    def train_step(self, x, optimizer, y=None, **loss_kw):
        return self._model().train_step(x, optimizer, y, **loss_kw)

    def reconstruct_mean(self, x, y=None, *, check_input=True):
        return self._model().reconstruct_mean(x, y, check_input=check_input)

    loss_and_grad.__doc__ = VAEModel.loss_and_grad.__doc__
    train_step.__doc__ = VAEModel.train_step.__doc__
    reconstruct_mean.__doc__ = VAEModel.reconstruct_mean.__doc__

    def _sk_y(self, y):
        return y if self.cond_dim else None

    def _out_dtype(self, X):
        """The float dtype of ``X`` if it has one, else the model's."""
        dt = getattr(X, "dtype", None)
        return dt if dt in (np.float32, np.float64) else self.dtype

    # ---------------------------------------------------------------------------- fit
    def fit(self, X, y=None, *, validation_data=None, epochs=FIT_DEFAULTS["epochs"],
            batch_size=FIT_DEFAULTS["batch_size"], lr=FIT_DEFAULTS["lr"], optimizer="adam",
            lr_schedule=FIT_DEFAULTS["lr_schedule"], kl_warmup_epochs=0, free_bits=None,
            early_stopping_patience=None, clip_norm=None, weight_decay=0.0, seed=None,
            threads=None, binarize=None, checkpoint_path=None, checkpoint_every=1,
            resume=False, progress=True, callbacks=(), warm_start=False, corruption=None,
            corruption_level=0.3, objective="elbo", k=None, comm=None):
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
        epochs : int, default 24
        batch_size : int, default 128
            The last batch of an epoch may be smaller.
        lr : float, default 3e-3
        optimizer : {"adam", "sgd"}, default "adam"
        lr_schedule : {None, "cosine", "step", "exponential"} or callable, default "cosine"
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
            the run; None leaves both as they are (with ``comm``: the node's CPUs divided
            by its ranks).
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
            Keep the current weights instead of re-initialising them from ``seed``: the
            built model goes on as it is, so parameters set since it was built do not
            apply (they do at the next fit without ``warm_start``).
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
        comm : mpi4py communicator or DataParallel, optional
            Data-parallel training over MPI (``pip install 'npvae[mpi]'``), e.g.
            ``comm=MPI.COMM_WORLD`` in a script run by ``mpiexec -n P python -m mpi4py
            script.py``. Every rank calls ``fit`` with the same data and settings; each
            takes its shard of every global batch of ``batch_size`` rows, the gradients are
            summed, and all ranks end with the same weights. Only rank 0 writes the
            checkpoint and shows the progress bar; callbacks run on every rank
            (``trainer.is_root`` tells rank 0). Pass
            ``npvae.training.distributed.DataParallel(comm, check_every=...)`` to choose how
            often the ranks' weights are compared. See :mod:`npvae.training.distributed`.

        Returns
        -------
        self

        Raises
        ------
        npvae.training.trainer.TrainingDiverged
            The loss or gradient became NaN/inf; the weights are rolled back to the start
            of that epoch and the last checkpoint is left as it was.
        npvae.training.distributed.RanksDiverged
            With ``comm``: the ranks' weights stopped being bit-identical.
        """
        warm_start = chk.flag(warm_start, "warm_start")
        trainer = Trainer(
            self, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            lr_schedule=lr_schedule, kl_warmup_epochs=kl_warmup_epochs, free_bits=free_bits,
            early_stopping_patience=early_stopping_patience, clip_norm=clip_norm,
            weight_decay=weight_decay, seed=seed, threads=threads, binarize=binarize,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, resume=resume,
            progress=progress, callbacks=callbacks, corruption=corruption,
            corruption_level=corruption_level, objective=objective, k=k, comm=comm)
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
        """Posterior means E_q[z | x], shape (N, Z): the features for a downstream model
        (in the dtype of a float32/float64 ``X``, else the model's)."""
        self._require_built()
        x = self._check_x(X, "X")
        return self.encode(x, self._sk_y(y))[0].astype(self._out_dtype(X), copy=False)

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
        n = chk.positive_int(n, "n")
        mean = chk.flag(mean, "mean")
        self.check_sample_memory(n, mean)
        rng = metrics._rng(rng, self)
        z = rng.standard_normal((int(n), self.latent_dim)).astype(self.dtype)
        if mean:
            return self.decode(z, y)
        return self.likelihood.sample(self.decode(z, y, raw=True), rng)

    def check_sample_memory(self, n, mean=True):
        """Raise :class:`~npvae.core.memory.MemoryBudgetError` (a ValueError) if ``sample(n)``
        would not fit in memory: its output, its latents, the metadata and the workspace."""
        self._require_built()
        rows = n * (1 if mean else 2)  # a draw holds the raw output beside the sample
        need = memory.decode_bytes(rows, self.latent_dim, self.decoder_hidden, self.input_dim,
                                   self.cond_dim, self.dtype.itemsize)
        memory.check_memory(need + 8 * n * self.cond_dim, f"sampling n={n} examples of "
                            f"{self.input_dim} values", "ask for fewer (or call sample "
                            "several times)")

    def elbo(self, X, y=None, *, n_samples=1, rng=None):
        """Per-example ELBO, shape (N,), in nats (beta = 1: the bound on log p(x))."""
        recon, kl = metrics.elbo_terms(self, X, y, n_samples=n_samples, rng=rng)
        return -(recon + kl)

    def score(self, X, y=None):
        """Mean ELBO over ``X`` in nats (higher is better), for scikit-learn's model
        selection. Deterministic: its ``n_samples`` draws of z per example come from the
        fixed seed :data:`~npvae.inference.metrics.EVAL_SEED`, so every call on the same
        model and data agrees, and equals the validation ELBO that ``fit`` records for
        ``validation_data=(X, y)`` (``-(val_recon + val_kl)``) and ``npvae eval``'s."""
        return float(self.elbo(X, self._sk_y(y), n_samples=self.n_samples,
                               rng=np.random.default_rng(metrics.EVAL_SEED)).mean())

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
        return persistence.load_model(cls, path, CHECKPOINT_KIND, backend, best=best)

    @classmethod
    def _from_checkpoint(cls, arrays, config, path, *, backend=None, best=True, kwargs=None):
        """The model that :meth:`load` rebuilds from a checkpoint's arrays and config, whose
        checked constructor arguments are ``kwargs`` (checked here when None: for files
        that hold a VAE among other models, like :class:`~npvae.training.m1m2.M1M2`)."""
        if kwargs is None:
            kwargs = cls._core_from_config(config, path, backend)[1]
        model = cls(**kwargs, backend=backend).build(kwargs["input_dim"])
        restore_params(model, arrays, path)
        kept = arrays.get("train/best_params")
        if best and kept is not None \
                and (config.get("training") or {}).get("finished") != "diverged":
            if not np.all(np.isfinite(kept)):
                raise CheckpointError(f"{path}: its best weights (train/best_params) contain "
                                      "NaN or inf; the file is damaged: load it with "
                                      "best=False for the latest weights")
            model.params.data[...] = kept
        model.history_ = list(config.get("history", []))
        return model

    @staticmethod
    def _core_from_config(config, path, backend):
        """An unbuilt core model of the architecture ``config`` describes, every value
        checked and its memory estimated; ``input_dim`` set, nothing allocated."""
        kwargs = schema.model_kwargs(config, path)
        schema.check_history(config.get("history", []), path)
        if config.get("training") is not None:
            schema.check_training(config["training"], path)
        d = kwargs.pop("input_dim")
        try:
            core = VAEModel(**kwargs, backend=backend)
            core.check_memory(d)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its config does not build a model: "
                                  f"{' '.join(str(exc).split())}") from None
        core.input_dim = d
        return core, {**kwargs, "input_dim": d}

for _name in VAE._param_names():
    if _name != "variance":  # the core keeps the variance inside its likelihood
        setattr(VAE, _name, Param())
        getattr(VAE, _name).__set_name__(VAE, _name)
for _name in MODEL_STATE:
    setattr(VAE, _name, ModelState())
    getattr(VAE, _name).__set_name__(VAE, _name)
del _name
