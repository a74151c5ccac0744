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

import contextlib
import signal
import sys
import threading

from npvae.cli.parser import TRAIN_DEFAULTS, build_parser, parse_hidden
from npvae.cli.runs import CLIError, describe_os_error, one_line

__all__ = ["main", "build_parser", "TRAIN_DEFAULTS", "parse_hidden"]


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (which handles it itself): stop as Ctrl-C would."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _sigterm_interrupts():
    """Turn SIGTERM into :class:`Terminated` for the block (main thread only), so start-up,
    figures and the final writes end with a message and status 143, not a silent kill."""
    if threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGTERM"):
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def main(argv=None, *, callbacks=()):
    """Run the command line; return the exit status (0 ok, 1 training diverged, 2 user
    error, 130 interrupted by Ctrl-C, 143 by SIGTERM). ``callbacks`` are passed to
    ``VAE.fit`` by ``train``."""
    command = "npvae"
    try:
        with _sigterm_interrupts():
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
            command = f"npvae {args.command}"
            return _run(commands, parallel, root, args, command, callbacks)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM before or after the work
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"{command}: {'terminated' if signum != signal.SIGINT else 'aborted'}",
              file=sys.stderr)
        return 128 + int(signum)


def _run(commands, parallel, root, args, command, callbacks):
    from npvae.core.memory import MemoryBudgetError
    from npvae.core.safe_npz import UnsafeFileError
    from npvae.training.checkpoint import CheckpointError

    try:
        parallel.check_command(args.command)
        return getattr(commands, args.func)(args, callbacks=callbacks) or 0
    except (CLIError, CheckpointError, MemoryBudgetError, UnsafeFileError) as exc:
        if root:  # under MPI raised on every rank alike
            print(f"{command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a full disk, ...
        if root:
            print(f"{command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        parallel.abort_on_interrupt()
        raise
