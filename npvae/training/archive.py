"""The checkpoint file format: named arrays plus a JSON config in one ``.npz`` file.

What a model's checkpoint holds (its kind, its parameters' names) is
:mod:`npvae.training.checkpoint`, which re-exports this module's API.

A checkpoint is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files), so
``np.load`` can open it anywhere. Besides the arrays it holds one reserved entry,
``__meta__.json``: a uint8 array with the UTF-8 bytes of a JSON document ::

    {"format": "npvae-checkpoint", "format_version": 1, "kind": "npvae.VAE",
     "npvae_version": "0.1.0", "config": {...},
     "arrays": [{"name": "params/encoder.0.W", "shape": [784, 400],
                 "dtype": "<f4", "crc32": 123456789}, ...]}

Writing is atomic: the archive goes to a temporary file in the target's
directory, is flushed and fsynced, and only then renamed over the target, so a
crash leaves either the old file or the new one, never half of one. Loading never
unpickles (``allow_pickle=False``) and checks the format version, the kind, and
every array's presence, shape, dtype and CRC-32 against the manifest.

The writer is :mod:`npvae.training.archive_save`, the reader
:mod:`npvae.training.archive_load`, the constants :mod:`npvae.training.archive_format`;
this module is their API.
"""

from npvae.training.archive_format import FORMAT_NAME, FORMAT_VERSION, META_KEY, CheckpointError
from npvae.training.archive_load import (  # noqa: F401 (the reader's limits)
    MAX_JSON_DEPTH,
    MAX_META_BYTES,
    check_shapes,
    load_checkpoint,
)
from npvae.training.archive_save import save_checkpoint

__all__ = [
    "CheckpointError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_KEY",
    "check_shapes",
    "load_checkpoint",
    "save_checkpoint",
]
