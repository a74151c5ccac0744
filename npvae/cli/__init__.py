"""The ``npvae`` command line: ``train``, ``sample``, ``reconstruct``, ``eval``, ``info``.

``npvae train`` with no arguments trains a VAE on the built-in sprites (no download) and
writes a run folder with the checkpoint, the metrics and the figures. The other commands take
a run folder (or a ``.npz`` checkpoint). User errors print one line to stderr and exit with
status 2; ``main`` returns the exit status instead of raising ``SystemExit``.

Modules: :mod:`~npvae.cli.parser` (options and help), :mod:`~npvae.cli.commands` (what
each command does), :mod:`~npvae.cli.runs` (run folders, data and figures of a run).
Imports point one way: ``commands`` uses ``parser`` and ``runs``, never this package.
"""

from __future__ import annotations

import sys

from npvae.cli.parser import TRAIN_DEFAULTS, build_parser, parse_hidden
from npvae.cli.runs import CLIError

__all__ = ["main", "build_parser", "TRAIN_DEFAULTS", "parse_hidden"]


def main(argv=None, *, callbacks=()):
    """Run the command line; return the exit status (0 ok, 1 training diverged, 2 user
    error, 130 interrupted by Ctrl-C, 143 by SIGTERM). ``callbacks`` are passed to
    ``VAE.fit`` by ``train``."""
    from npvae.cli import commands, parallel  # after parsing: --help stays fast

    parser = build_parser()
    root = parallel.is_root()  # under mpiexec, rank 0 alone prints
    try:
        with parallel.silenced(not root):
            args, extra = parser.parse_known_args(argv)
            if extra:  # point to the help of the command they were given to
                where = parser.commands.get(args.command, parser)
                where.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a bad option (message printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        with parallel.silenced(not root):
            parser.print_help()
        return 0
    try:
        parallel.check_command(args.command)
        return getattr(commands, args.func)(args, callbacks=callbacks) or 0
    except CLIError as exc:  # under MPI raised on every rank alike
        if root:
            print(f"npvae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        parallel.abort_on_interrupt()
        print(f"npvae {args.command}: aborted", file=sys.stderr)
        return 130

