"""scikit-learn's estimator protocol by duck typing, without importing scikit-learn.

:class:`~npvae.training.estimator.VAE` inherits every method of the core
:class:`~npvae.core.model.VAEModel`, which reads its networks and resolved settings from
attributes of ``self`` (``self.likelihood`` is a Likelihood object, ``self.dtype`` a NumPy
dtype, ``self.params`` the weights). scikit-learn wants the opposite of the same names:
``vae.likelihood`` must stay the string that was passed, the constructor may only store its
arguments, and ``fit`` may add only attributes that end in ``_``. So a VAE keeps two things:

* its **parameters**, exactly as passed, in the instance ``__dict__`` (where scikit-learn's
  checks look): :meth:`EstimatorMixin.get_params` reads them, ``set_params`` and plain
  assignment write them;
* the **model** built from them, a plain ``VAEModel`` in ``self._core``, made when ``fit``
  (or the first call that needs weights) builds it; that is where the arguments are
  validated.

:class:`Param` and :class:`ModelState` are the data descriptors that join the two: reading
``vae.likelihood`` gives the built model's Likelihood object once there is a model (the
argument before), and ``vae.params``, ``vae.encoder``, ... always read the model, building
it on first use when ``input_dim`` was given. A parameter set after the model was built
takes effect at the next ``fit``, as in scikit-learn.
"""

from __future__ import annotations

import inspect

__all__ = ["NotFittedError", "Param", "ModelState", "EstimatorMixin"]


class NotFittedError(RuntimeError, ValueError, AttributeError):
    """The model has no weights yet: call ``fit`` (or pass ``input_dim``). A ValueError and
    an AttributeError, as scikit-learn's own NotFittedError, and a RuntimeError, as
    npvae raised before."""


class Param:
    """A constructor argument: stored as passed, read as the built model's value."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        core = obj.__dict__.get("_core")
        if core is not None:
            return getattr(core, self.name)
        return obj.__dict__[self.name]

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value
        core = obj.__dict__.get("_core")
        if core is not None and core.params is None:  # validated but not built: redo
            obj.__dict__["_core"] = None


class ModelState:
    """An attribute of the built model (``params``, ``encoder``, ...), read and written
    there; reading it makes the model (and builds it when ``input_dim`` is known)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj._model(), self.name)

    def __set__(self, obj, value):
        setattr(obj._model(), self.name, value)


class EstimatorMixin:
    """``get_params``, ``set_params``, pickling and scikit-learn's tags for a class whose
    ``__init__`` stores its arguments and whose ``_model()`` builds the model from them."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        """The constructor arguments, as passed (``deep`` is accepted for scikit-learn;
        no argument is itself an estimator)."""
        return {name: self.__dict__[name] for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments (validated, and the model rebuilt, by the next
        ``fit``); return self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters are {valid}")
            setattr(self, name, value)
        return self

    def _built(self):
        core = self.__dict__.get("_core")
        return core is not None and core.params is not None

    def __sklearn_is_fitted__(self):
        return self._built()

    @property
    def n_features_in_(self):
        if not self._built():
            raise AttributeError("n_features_in_ is set by fit")
        return self._core.input_dim

    def __sklearn_tags__(self):
        # only scikit-learn calls this, so importing it here costs nothing extra
        from npvae.training.sklearn_adapter import estimator_tags

        return estimator_tags(self)

    def __getattr__(self, name):
        # attributes the core model has beyond the ModelState list (a newer core's)
        core = self.__dict__.get("_core")
        if core is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(core, name)

    # pickle and deepcopy: the parameters, the model (VAEModel pickles itself without its
    # compiled kernels) and the fitted attributes, as they are
    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _params_repr(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        args = [f"{k}={v!r}" for k, v in self.get_params().items()
                if not _same(v, defaults.get(k))]
        return f"{type(self).__name__}({', '.join(args)})"


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return a is b
