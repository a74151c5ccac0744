"""``python -m npvae``: the ``npvae`` command line (see :mod:`npvae.cli`)."""

import sys

from npvae.cli import main

if __name__ == "__main__":
    sys.exit(main())
