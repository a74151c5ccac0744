"""Semi-supervised learning with M2 (Kingma et al. 2014): :class:`SemiSupervisedVAE`, an
:class:`~npvae.core.m2.M2Model` with scikit-learn's semi-supervised surface (``fit(X, y)``
with ``y = -1`` marking unlabelled rows, as ``sklearn.semi_supervised`` does).

For M1+M2 (M2 on the latent means of a VAE trained on all the data) see
:class:`npvae.training.m1m2.M1M2`.
"""

from __future__ import annotations

import numpy as np

from npvae.core import checks as chk
from npvae.core.classifier import check_labels
from npvae.core.m2 import M2Model
from npvae.training import persistence, schema
from npvae.training.checkpoint import CheckpointError, save_checkpoint
from npvae.training.m2_trainer import balanced_labels, run
from npvae.training.protocol import EstimatorMixin, ModelState, NotFittedError, Param
from npvae.training.trainer import param_arrays, restore_params

__all__ = ["SemiSupervisedVAE", "balanced_labels", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "npvae.M2"
_CTOR_KEYS = ("n_classes", "input_dim", "latent_dim", "encoder_hidden", "decoder_hidden",
              "classifier_hidden", "activation", "likelihood", "variance", "n_samples",
              "dtype", "init", "seed", "alpha")


class SemiSupervisedVAE(EstimatorMixin, M2Model):
    """M2 estimator in scikit-learn's semi-supervised convention (``y = -1``: unlabelled).

    Parameters are :class:`~npvae.core.m2.M2Model`'s, plus ``alpha``; as for
    :class:`npvae.VAE`, the constructor only stores them, and ``fit`` validates them and
    builds the networks (see :mod:`npvae.training.protocol`).

    Parameters
    ----------
    n_classes : int, optional
        K; by default ``max(y) + 1`` of the data ``fit`` sees.
    input_dim, latent_dim, hidden, encoder_hidden, decoder_hidden, classifier_hidden,
    activation, likelihood, variance, n_samples, dtype, init, seed, backend
        As for :class:`~npvae.core.m2.M2Model`.
    alpha : float, optional
        Weight of the cross-entropy of the labelled rows; default Kingma's
        ``0.1 * N / N_labelled`` of the data ``fit`` sees (``alpha_`` holds the value used).

    Attributes
    ----------
    classes_ : ndarray (K,)
        ``0 .. K-1``.
    alpha_ : float
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss`` (the training objective of a step, averaged
        over the epoch), ``ce`` (labelled rows' -log q(y|x)), ``entropy`` (H(q(y|x)) of the
        unlabelled rows), ``kl``, ``recon``, ``val_accuracy``, ``test_accuracy`` (None
        without that data), ``seconds``.
    best_epoch_ : int or None
        The epoch of the best validation accuracy, whose weights the model holds.
    """

    def __init__(self, n_classes=None, input_dim=None, latent_dim=20, hidden=(256,), *,
                 encoder_hidden=None, decoder_hidden=None, classifier_hidden=None,
                 activation="relu", likelihood="bernoulli", variance=1.0, n_samples=1,
                 alpha=None, dtype="float32", init="auto", seed=0, backend=None):
        self.n_classes = n_classes
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.encoder_hidden = encoder_hidden
        self.decoder_hidden = decoder_hidden
        self.classifier_hidden = classifier_hidden
        self.activation = activation
        self.likelihood = likelihood
        self.variance = variance
        self.n_samples = n_samples
        self.alpha = alpha
        self.dtype = dtype
        self.init = init
        self.seed = seed
        self.backend = backend

    # ----------------------------------------------------------------- the built model
    def _model(self, input_dim=None, n_classes=None):
        """The M2Model built from the parameters (validating them), for ``input_dim`` and
        ``n_classes`` when given (default: the parameters of those names)."""
        core = self.__dict__.get("_core")
        if core is None or input_dim is not None or n_classes is not None:
            kw = self.get_params()
            if kw.pop("alpha") is not None:
                chk.nonnegative_float(self.__dict__["alpha"], "alpha")
            for name, value in (("input_dim", input_dim), ("n_classes", n_classes)):
                given = kw[name]
                if value is not None and given is not None and given != value:
                    raise ValueError(f"the data has {value} {name.replace('_', ' ')} but "
                                     f"{type(self).__name__} was built with {name}={given}")
                kw[name] = given if value is None else value
            if kw["n_classes"] is None:
                raise NotFittedError(f"this {type(self).__name__} does not know its classes "
                                     "yet: call fit(X, y) first (or pass n_classes=...)")
            core = M2Model(**kw)
            self.__dict__["_core"] = core
        return core

    def _require_built(self):
        core = self.__dict__.get("_core")
        if core is None and self.__dict__["n_classes"] is not None:
            core = self._model()
        if core is None or core.params is None:
            raise NotFittedError(f"this {type(self).__name__} has no weights yet: call "
                                 "fit(X, y) first (or pass n_classes=... and input_dim=...)")

    def __repr__(self):
        return M2Model.__repr__(self) if self._built() else self._params_repr()

    def __sklearn_tags__(self):
        from npvae.training.sklearn_adapter import classifier_tags

        return classifier_tags(self)

    # the hot path and the inference helpers run on the model itself
    def loss_and_grad(self, x, y, **kwargs):
        return self._model().loss_and_grad(x, y, **kwargs)

    def predict_log_proba(self, X, *, check_input=True):
        self._require_built()
        return self._core.predict_log_proba(X, check_input=check_input)

    def encode(self, x, y):
        self._require_built()
        return self._core.encode(x, y)

    def decode(self, z, y, *, raw=False):
        self._require_built()
        return self._core.decode(z, y, raw=raw)

    def _check_x(self, x, argname="x"):
        self._require_built()
        return self._core._check_x(x, argname)

    loss_and_grad.__doc__ = M2Model.loss_and_grad.__doc__
    predict_log_proba.__doc__ = M2Model.predict_log_proba.__doc__
    encode.__doc__ = M2Model.encode.__doc__
    decode.__doc__ = M2Model.decode.__doc__

    # ---------------------------------------------------------------------------- fit
    def fit(self, X, y, *, validation_data=None, test_data=None, epochs=100, batch_size=100,
            labelled_batch_size=None, lr=1e-3, weight_decay=0.0, clip_norm=None,
            early_stopping_patience=None, seed=None, threads=None, progress=True,
            callbacks=(), warm_start=False, weighting="batch"):
        """Train on labelled and unlabelled rows together (y = -1 marks an unlabelled row).

        Batches. An epoch is one pass over the unlabelled rows in random order,
        ``batch_size`` of them per step; every step also takes ``labelled_batch_size``
        labelled rows (default ``min(N_l, batch_size)``) from a stream that cycles through
        the few labelled rows, reshuffled at each pass (as Pyro's SS-VAE example reuses
        its labelled set). The unlabelled rows are enumerated over all K classes. Without
        unlabelled rows an epoch is one pass over the labelled ones.

        Weighting. ``"batch"`` (the default): a step's loss is the mean over its labelled
        rows of ``-ELBO(x, y) + alpha (-log q(y|x))`` plus the mean over its unlabelled rows
        of ``U(x)``, so the cycled labelled set weighs as much as all the unlabelled data
        (as in the common reimplementations of M2). ``"dataset"``: rows weigh
        ``(N_l / N) / labelled_batch_size`` and ``(N_u / N) / batch_size``, so that each
        step is an unbiased estimate of Kingma's objective per data point,
        ``(1/N) [sum_labelled (-ELBO + alpha CE) + sum_unlabelled U]``, whatever the batch
        holds; the cross-entropy then weighs ``alpha N_l / N`` (0.1 with the default
        alpha) against the bound's 1, and on scikit-learn's digits with 50 labels M2 then
        scored 0.832 against 0.891 with ``"batch"`` (150 epochs, 5 label draws; README,
        "Semi-supervised learning").

        Parameters
        ----------
        X : array_like (N, D)
        y : array_like (N,) of int
            Class labels ``0 .. K-1``, or -1 for an unlabelled row.
        validation_data, test_data : (X, y), optional
            Fully labelled. Their accuracy is computed after every epoch (``history_``, the
            progress bar). The model keeps the weights of the epoch with the best validation
            accuracy (``best_epoch_``); test data is only reported, never selects.
        epochs : int, default 100
        batch_size : int, default 100
            Unlabelled rows per step.
        labelled_batch_size : int, optional
        lr : float, default 1e-3
            Adam's learning rate.
        weight_decay : float, default 0
            Decoupled (AdamW) weight decay.
        clip_norm : float, optional
        early_stopping_patience : int, optional
            Stop when the validation accuracy has not improved for this many epochs.
        seed : int, optional
            Seeds shuffling, the labelled stream and the noise (default: the model's).
        threads : int, optional
        progress : bool, default True
        callbacks : sequence of callables ``f(model, record)``, called after every epoch;
            one that returns True stops training.
        weighting : {"batch", "dataset"}, default "batch"
            See above.
        warm_start : bool, default False
            Keep the current weights.

        Returns
        -------
        self

        Raises
        ------
        npvae.training.trainer.TrainingDiverged
            The loss became NaN or inf; the model is rolled back to the start of the epoch.
        """
        x0 = chk.as_data(X, np.float64, "X")
        yl = check_labels(y, x0.shape[0], np.iinfo(np.int64).max, "y")
        lab = np.flatnonzero(yl >= 0)
        if len(lab) == 0:
            raise ValueError("y has no labelled rows (all -1); M2 needs some labels. For "
                             "unlabelled data alone, train an npvae.VAE")
        if not (warm_start and self._built()):
            k = self.__dict__["n_classes"] or max(int(yl.max()) + 1, 2)
            self._model(x0.shape[1], k).build(x0.shape[1])
        core = self._core
        X = core._check_x(x0, "X")
        yl = check_labels(yl, len(X), core.n_classes, "y")
        val = self._labelled(validation_data, "validation_data")
        test = self._labelled(test_data, "test_data")
        epochs = chk.positive_int(epochs, "epochs")
        bu = chk.positive_int(batch_size, "batch_size")
        bl = min(len(lab), bu) if labelled_batch_size is None else chk.positive_int(
            labelled_batch_size, "labelled_batch_size")
        core.check_memory(X.shape[1], bu)
        patience = None if early_stopping_patience is None else chk.positive_int(
            early_stopping_patience, "early_stopping_patience")
        if patience is not None and val is None:
            raise ValueError("early_stopping_patience needs validation_data=(X_val, y_val)")
        if weighting not in ("batch", "dataset"):
            raise ValueError(f"weighting must be 'batch' or 'dataset', got {weighting!r}")
        alpha = self.__dict__["alpha"]
        self.alpha_ = (0.1 * len(X) / len(lab) if alpha is None
                       else chk.nonnegative_float(alpha, "alpha"))
        self.classes_ = np.arange(core.n_classes)
        seed = core.seed if seed is None else chk.positive_int(seed, "seed", minimum=0)
        self.history_, self.best_epoch_ = [], None
        run(self, X, yl, val, test, epochs=epochs, batch_size=bu, labelled_batch_size=bl,
            lr=chk.positive_float(lr, "lr"), weight_decay=weight_decay, clip_norm=clip_norm,
            patience=patience, seed=seed, threads=threads, progress=progress,
            callbacks=callbacks, weighting=weighting)
        return self

    def _labelled(self, data, argname):
        if data is None:
            return None
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{argname} must be (X, y) with every row labelled")
        x = self._check_x(data[0], f"{argname}[0]")
        return x, check_labels(data[1], len(x), self.n_classes, f"{argname}[1]",
                               unlabelled=False)

    # ---------------------------------------------------------------------- inference
    def predict_proba(self, X):
        """q(y | x), shape (N, K)."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """The most probable class under q(y | x), (N,) int64."""
        return self.predict_log_proba(X).argmax(axis=1)

    def score(self, X, y):
        """Accuracy of :meth:`predict` on fully labelled ``(X, y)``."""
        self._require_built()
        y = check_labels(y, np.shape(X)[0], self.n_classes, unlabelled=False)
        return float(np.mean(self.predict(X) == y))

    def transform(self, X, y=None):
        """Posterior mean of the style z, (N, Z): ``E_q[z | x, y]`` where ``y`` gives the
        class, else (``y`` None or -1) ``sum_k q(k | x) E_q[z | x, k]``."""
        x = self._check_x(X, "X")
        y = np.full(len(x), -1) if y is None else check_labels(y, len(x), self.n_classes)
        out = np.zeros((len(x), self.latent_dim))
        known = y >= 0
        if known.any():
            out[known] = self.encode(x[known], y[known])[0]
        if not known.all():
            xu = x[~known]
            q = np.exp(self.predict_log_proba(xu, check_input=False))
            for c in range(self.n_classes):
                out[~known] += q[:, c:c + 1] * self.encode(xu, np.full(len(xu), c))[0]
        return out.astype(self.dtype)

    def sample(self, n, *, y=None, rng=None, mean=True):
        """Generate ``n`` examples of class ``y``: z ~ N(0, I), decode as that class.

        Parameters
        ----------
        n : int
        y : int or array_like (n,) of int, optional
            The class (one for all, or one per sample); default ``arange(n) % K``.
        rng : numpy.random.Generator or int, optional
        mean : bool, default True
            E[x | y, z] (probabilities for Bernoulli); False draws x ~ p(x | y, z).
        """
        self._require_built()
        n = chk.positive_int(n, "n")
        rng = self.rng if rng is None else (rng if isinstance(rng, np.random.Generator)
                                            else np.random.default_rng(rng))
        y = np.arange(n) % self.n_classes if y is None else np.broadcast_to(y, (n,))
        z = rng.standard_normal((n, self.latent_dim)).astype(self.dtype)
        if mean:
            return self.decode(z, y)
        return self.likelihood.sample(self.decode(z, y, raw=True), rng)

    # -------------------------------------------------------------------- persistence
    def config(self):
        """The built model's constructor arguments, and ``alpha`` as passed."""
        self._require_built()
        return {**self._core.config(), "alpha": self.__dict__["alpha"]}

    def save(self, path):
        """Write weights, config, ``alpha_`` and ``history_`` to one ``.npz`` (atomically,
        no pickle; see :mod:`npvae.training.checkpoint`). Reload with :meth:`load`."""
        self._require_built()
        config = {**self.config(), "alpha_": getattr(self, "alpha_", None),
                  "best_epoch": getattr(self, "best_epoch_", None),
                  "history": list(getattr(self, "history_", []))}
        save_checkpoint(path, param_arrays(self), config, kind=CHECKPOINT_KIND)

    @classmethod
    def load(cls, path, *, backend=None):
        """Rebuild a model written by :meth:`save`. Its config is checked (types, sizes,
        memory) and the arrays' names and shapes against it before any array is read;
        raises CheckpointError if anything is wrong."""
        return persistence.load_model(cls, path, CHECKPOINT_KIND, backend)

    @classmethod
    def _from_checkpoint(cls, arrays, config, path, *, backend=None, kwargs=None):
        """The model of a checkpoint's arrays and config (``kwargs``: its checked
        constructor arguments, checked here when None)."""
        if kwargs is None:
            kwargs = cls._core_from_config(config, path, backend)[1]
        model = cls(**kwargs, backend=backend)
        model._model().build(kwargs["input_dim"])
        restore_params(model, arrays, path)
        model.classes_ = np.arange(model.n_classes)
        model.alpha_ = _config_number(config, "alpha_", path)
        best = config.get("best_epoch")
        model.best_epoch_ = None if best is None else _checked(path, "best_epoch",
                                                               chk.positive_int, best)
        history = config.get("history", [])
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise CheckpointError(f"{path}: config value 'history' must be a list of records")
        model.history_ = list(history)
        return model

    @staticmethod
    def _core_from_config(config, path, backend):
        """An unbuilt core M2Model of the architecture ``config`` describes, every value
        checked and its memory estimated; ``input_dim`` set, nothing allocated."""
        missing = [k for k in ("n_classes", "input_dim") if config.get(k) is None]
        if missing:
            raise CheckpointError(f"{path}: config has no {', '.join(missing)}; not a saved M2")
        kwargs = {k: config[k] for k in _CTOR_KEYS if k in config}
        for key, check in (("activation", schema._activation), ("dtype", schema._dtype),
                           ("likelihood", schema._likelihood)):  # as a VAE's are checked
            if key in kwargs:
                kwargs[key] = _checked(path, key, check, kwargs[key])
        _config_number(config, "alpha", path)
        d = _checked(path, "input_dim", chk.positive_int, kwargs.pop("input_dim"))
        try:
            core = M2Model(**{k: v for k, v in kwargs.items() if k != "alpha"},
                           backend=backend)
            core.check_memory(d)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its config does not build a model: "
                                  f"{' '.join(str(exc).split())}") from None
        core.input_dim = d
        return core, {**kwargs, "input_dim": d}


def _checked(path, key, check, value):
    try:
        return check(value, key)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config value {key!r} is invalid: {exc}") from None


def _config_number(config, key, path):
    value = config.get(key)
    return None if value is None else _checked(path, key, chk.nonnegative_float, value)


# what the core M2Model keeps besides its constructor arguments (read on the built model)
MODEL_STATE = ("kernels", "params", "classifier", "encoder", "decoder", "rng", "_workspaces")
for _name in SemiSupervisedVAE._param_names():
    if _name not in ("variance", "alpha"):  # the core keeps no such attributes
        setattr(SemiSupervisedVAE, _name, Param())
        getattr(SemiSupervisedVAE, _name).__set_name__(SemiSupervisedVAE, _name)
for _name in MODEL_STATE:
    setattr(SemiSupervisedVAE, _name, ModelState())
    getattr(SemiSupervisedVAE, _name).__set_name__(SemiSupervisedVAE, _name)
del _name
