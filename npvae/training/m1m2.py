"""M1+M2 (Kingma et al. 2014): a VAE (M1) trained on all the data, unlabelled and labelled,
then M2 (:class:`~npvae.training.semisupervised.SemiSupervisedVAE`) on its posterior means,
with a Gaussian likelihood. :class:`M1M2` is the two steps in one estimator; by hand it is::

    m1 = VAE(latent_dim=20, likelihood="gaussian", variance=0.05).fit(X)  # every row
    m2 = SemiSupervisedVAE(likelihood="gaussian-diag").fit(m1.transform(X), y)

and ``m2.predict(m1.transform(X_new))``.
"""

from __future__ import annotations

from npvae.training import schema
from npvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npvae.training.estimator import VAE
from npvae.training.protocol import EstimatorMixin, NotFittedError
from npvae.training.semisupervised import SemiSupervisedVAE
from npvae.training.trainer import param_arrays

__all__ = ["M1M2", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "npvae.M1M2"


class M1M2(EstimatorMixin):
    """M2 on the latent means of a VAE.

    Parameters
    ----------
    m1 : npvae.VAE, optional
        The feature model, fitted by :meth:`fit` (in place, as a Pipeline fits its steps);
        default ``VAE(latent_dim=20, hidden=(256,), likelihood="gaussian", variance=0.05)``
        (on the digits, a Bernoulli M1 kept 4-10 of its 20 units active and its features
        lost accuracy).
    m2 : SemiSupervisedVAE, optional
        Default ``SemiSupervisedVAE(likelihood="gaussian-diag")``: a learned variance per
        latent feature, since the features' scales differ.

    Attributes
    ----------
    m1_, m2_ : the fitted models
    """

    def __init__(self, m1=None, m2=None):
        self.m1 = m1
        self.m2 = m2

    def _built(self):
        return "m2_" in self.__dict__ and self.m2_._built()

    def __sklearn_tags__(self):
        from npvae.training.sklearn_adapter import classifier_tags

        return classifier_tags(self)

    def _fitted(self):
        if not self._built():
            raise NotFittedError("this M1M2 has no weights yet: call fit(X, y) first")
        return self.m1_, self.m2_

    def fit(self, X, y, *, m1_fit=None, fit_m1=True, validation_data=None, test_data=None,
            **m2_fit):
        """``m1.fit(X, **m1_fit)`` on every row, then ``m2.fit(m1.transform(X), y, ...)``
        with the validation and test data mapped through M1 too.

        Parameters
        ----------
        X : array_like (N, D)
        y : array_like (N,) of int, -1 for an unlabelled row
        m1_fit : dict, optional
            Arguments of :meth:`npvae.VAE.fit` (``epochs``, ``lr``, ...).
        fit_m1 : bool, default True
            False keeps a ``m1`` that was fitted already (it never sees labels, so one M1
            can serve several label sets).
        validation_data, test_data : (X, y), optional
        **m2_fit
            Arguments of :meth:`SemiSupervisedVAE.fit`.
        """
        self.m1_ = self.m1 if self.m1 is not None else VAE(
            latent_dim=20, hidden=(256,), likelihood="gaussian", variance=0.05)
        self.m2_ = self.m2 if self.m2 is not None else SemiSupervisedVAE(
            likelihood="gaussian-diag")
        if fit_m1:
            self.m1_.fit(X, **(m1_fit or {}))
        elif not self.m1_._built():
            raise ValueError("fit_m1=False needs an m1 that is fitted already")
        self.m2_.fit(self.m1_.transform(X), y, validation_data=self._mapped(validation_data),
                     test_data=self._mapped(test_data), **m2_fit)
        return self

    @property
    def n_classes(self):
        return self._fitted()[1].n_classes

    @property
    def latent_dim(self):
        return self._fitted()[1].latent_dim

    def _mapped(self, data):
        return None if data is None else (self.m1_.transform(data[0]), data[1])

    def predict_proba(self, X):
        """q(y | m1(x)), (N, K)."""
        m1, m2 = self._fitted()
        return m2.predict_proba(m1.transform(X))

    def predict(self, X):
        m1, m2 = self._fitted()
        return m2.predict(m1.transform(X))

    def score(self, X, y):
        """Accuracy on fully labelled ``(X, y)``."""
        m1, m2 = self._fitted()
        return m2.score(m1.transform(X), y)

    def transform(self, X, y=None):
        """M2's style z of M1's latent means, (N, Z2)."""
        m1, m2 = self._fitted()
        return m2.transform(m1.transform(X), y)

    def decode(self, z, y):
        """M2 decodes style ``z`` (N, Z2) as classes ``y`` into the mean of M1's latent,
        M1 decodes that: images (N, D)."""
        m1, m2 = self._fitted()
        return m1.decode(m2.decode(z, y))

    def sample(self, n, *, y=None, rng=None):
        """Class-conditional samples: z2 ~ N(0, I), M2 decodes the mean latent of M1 for
        class ``y`` (see :meth:`SemiSupervisedVAE.sample`), M1 decodes that."""
        m1, m2 = self._fitted()
        return m1.decode(m2.sample(n, y=y, rng=rng))

    def save(self, path):
        """Both models in one ``.npz`` (atomic, no pickle); reload with :meth:`load`."""
        m1, m2 = self._fitted()
        arrays = {f"m1/{k}": v for k, v in param_arrays(m1).items()}
        arrays.update({f"m2/{k}": v for k, v in param_arrays(m2).items()})
        config = {"m1": {**m1.config(), "history": list(getattr(m1, "history_", []))},
                  "m2": {**m2.config(), "alpha_": getattr(m2, "alpha_", None),
                         "best_epoch": getattr(m2, "best_epoch_", None),
                         "history": list(getattr(m2, "history_", []))}}
        save_checkpoint(path, arrays, config, kind=CHECKPOINT_KIND)

    @classmethod
    def load(cls, path, *, backend=None):
        """Rebuild both models from :meth:`save`; each one's config and arrays are checked
        (as :meth:`npvae.VAE.load` and :meth:`SemiSupervisedVAE.load` do) before any array
        is read. Raises CheckpointError if anything is wrong."""
        holder = {}

        def check(meta):
            config = meta["config"]
            if not isinstance(config.get("m1"), dict) or not isinstance(config.get("m2"), dict):
                raise CheckpointError(f"{path}: config has no 'm1' and 'm2'; not a saved M1M2")
            for part, model_cls in (("m1", VAE), ("m2", SemiSupervisedVAE)):
                core, holder[part] = model_cls._core_from_config(config[part], path, backend)
                entries = [{**e, "name": e["name"][3:]} for e in meta["arrays"]
                           if e["name"].startswith(part + "/")]
                schema.check_manifest_fits(core, {**meta, "arrays": entries}, path)

        arrays, config, _ = load_checkpoint(path, kind=CHECKPOINT_KIND, check=check)
        part = {p: {k[3:]: v for k, v in arrays.items() if k.startswith(p + "/")}
                for p in ("m1", "m2")}
        m1 = VAE._from_checkpoint(part["m1"], config["m1"], path, backend=backend,
                                  kwargs=holder["m1"])
        m2 = SemiSupervisedVAE._from_checkpoint(part["m2"], config["m2"], path,
                                                backend=backend, kwargs=holder["m2"])
        model = cls(m1, m2)
        model.m1_, model.m2_ = m1, m2
        return model
