"""``load`` for the estimators: a checkpoint's config checked before any array is read.

:class:`~npvae.training.estimator.VAE` and
:class:`~npvae.training.semisupervised.SemiSupervisedVAE` load the same way: the config
(types, sizes, the memory the model would take) and the arrays' names and shapes are
checked against the model it describes from the file's manifest alone, then the arrays are
read and the model built from them. Each class supplies the two steps that differ:
``_core_from_config(config, path, backend)`` (an unbuilt core model and its checked
constructor arguments) and ``_from_checkpoint(arrays, config, path, backend=, kwargs=,
...)`` (the model, weights restored).
"""

from __future__ import annotations

from npvae.training import schema
from npvae.training.checkpoint import load_checkpoint


def load_model(cls, path, kind, backend=None, **options):
    """The ``cls`` model in the checkpoint at ``path`` of ``kind``; ``options`` go to
    ``cls._from_checkpoint``. Raises CheckpointError if anything is wrong."""
    holder = {}

    def check(meta):  # before any array is read: config types, sizes, memory
        core, holder["kwargs"] = cls._core_from_config(meta["config"], path, backend)
        schema.check_manifest_fits(core, meta, path)

    arrays, config, _ = load_checkpoint(path, kind=kind, check=check)
    return cls._from_checkpoint(arrays, config, path, backend=backend,
                                kwargs=holder["kwargs"], **options)
