"""``python -m npvae``: the ``npvae`` command line (see :mod:`npvae.cli`)."""

import sys

if __name__ == "__main__":
    try:  # importing npvae (Numba) takes a second or two: Ctrl-C there is not a traceback
        from npvae.cli import main
    except KeyboardInterrupt:
        print("npvae: aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
