"""The checkpoint file format's constants (name, version, the metadata entry, the array
names and dtypes it stores), its error, and the checksum both writer and reader take;
see :mod:`npvae.training.archive` for the format."""

import re
import zlib

import numpy as np

FORMAT_NAME = "npvae-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__meta__.json"

# Dtype kinds that ``.npy`` stores without pickle and that compare exactly:
# bool, signed/unsigned int, float, complex, bytes, unicode.
_ALLOWED_KINDS = "biufcSU"  # as npvae.core.safe_npz.ALLOWED_KINDS
# Segments of letters, digits, '_', '.', '-' joined by '/'; no leading '.' or '_'
# in the first segment ('__' names are reserved for the format itself).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


class CheckpointError(ValueError):
    """A checkpoint file is damaged, of the wrong format or kind, or does not fit."""


def _crc32(a):
    return zlib.crc32(a.reshape(-1).view(np.uint8))
