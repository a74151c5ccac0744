"""What the commands of :mod:`npvae.cli` share: progress messages (silenced by
``--quiet``), warnings as one line, and the options a user gave explicitly."""

from __future__ import annotations

import contextlib
import sys
import warnings

_RUN_ONLY = ("out", "resume", "no_progress", "no_figures", "quiet", "func", "command",
             "download_timeout")


def _say(args, msg):
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _plain_warnings():
    """Show warnings as one 'warning: ...' line instead of file:line source dumps."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, *a, **k: print(f"warning: {m}", file=sys.stderr)
        yield


def _explicit(args):
    return {k: v for k, v in vars(args).items() if v is not None and k not in _RUN_ONLY}
