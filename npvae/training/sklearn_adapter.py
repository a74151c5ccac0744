"""scikit-learn's tags for npvae's estimators: the one module of npvae that imports
scikit-learn, and only when scikit-learn asks (``VAE.__sklearn_tags__``), so ``import
npvae`` never loads it.

Since scikit-learn 1.6, tags are a :class:`sklearn.utils.Tags` object; an estimator that does
not inherit from ``BaseEstimator`` has to build one itself. A VAE is an unsupervised
transformer: ``y`` is optional (class metadata for a conditional model, ignored otherwise),
``transform`` keeps float32 and float64, and NaN/inf are rejected.
"""

from __future__ import annotations

from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

__all__ = ["estimator_tags"]


def estimator_tags(model):
    """The :class:`sklearn.utils.Tags` of a :class:`npvae.VAE`."""
    return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                input_tags=InputTags(allow_nan=False), requires_fit=True)
