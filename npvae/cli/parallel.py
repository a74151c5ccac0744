"""``npvae train`` under ``mpiexec``: which rank does what, and errors that end every rank.

When an MPI launcher starts several ``npvae`` processes (:func:`npvae.training.distributed.
launched_world` reads its environment), ``npvae train`` trains data-parallel on
``MPI.COMM_WORLD``: rank 0 reads the options, loads (and downloads) the data first, creates
the run folder, prints, and writes every file; the others load the data after it and train.
A user error on any rank is raised on every rank and printed once, by rank 0. An unexpected
exception on one rank ends all of them through ``comm.Abort`` (an excepthook), since the others
would wait for it forever.
"""

from __future__ import annotations

import contextlib
import io
import sys

from npvae.cli.runs import CLIError
from npvae.training.distributed import DataParallel, launched_world, world_comm

__all__ = ["data_parallel", "from_root", "root_first", "is_root", "silenced", "check_command"]

_active = None  # the DataParallel of this process's command, once started


def is_root():
    """False on the ranks other than 0 of an MPI launch (they stay silent)."""
    world = launched_world()
    return world is None or not world[1]


@contextlib.contextmanager
def silenced(quiet):
    """Swallow stdout and stderr when ``quiet`` (argparse errors and --help on ranks > 0)."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def check_command(command):
    """Refuse commands other than ``train`` under a launcher of several processes (each
    would do the whole job and write the same files)."""
    world = launched_world()
    if command != "train" and world is not None and world[0] != 1:
        raise CLIError(f"only `npvae train` runs on several MPI processes; run `npvae "
                       f"{command}` without mpiexec")


def data_parallel(command):
    """A :class:`DataParallel` over ``MPI.COMM_WORLD`` when a launcher started several
    processes (installing the abort-on-exception hook), else None."""
    global _active
    check_command(command)
    try:
        comm = world_comm()
    except ImportError as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    if comm is None:
        return None
    _active = DataParallel(comm)
    sys.excepthook = _abort_hook
    return _active


def _abort_hook(kind, exc, tb):
    _active.abort(exc)


def abort_on_interrupt():
    """Ctrl-C outside fit's own handling: end every rank, not just this one."""
    if _active is not None and _active.size > 1:
        _active.abort(KeyboardInterrupt("interrupted"))


def from_root(dp, fn):
    """``fn()`` on rank 0 only, its result on every rank; its CLIError raised on every rank."""
    if dp is None:
        return fn()
    return dp.from_root(fn)


def root_first(dp, fn):
    """``fn()`` on rank 0, then (if it worked) on every other rank: rank 0 downloads a data
    set before the others read it. A CLIError on any rank is raised on every rank."""
    if dp is None:
        return fn()
    out, err = None, None
    if dp.is_root:
        try:
            out = fn()
        except CLIError as exc:
            err = str(exc)
    err = dp.comm.bcast(err, root=0)
    if err is None and not dp.is_root:
        try:
            out = fn()
        except CLIError as exc:
            err = f"on MPI rank {dp.rank}: {exc}"
    errors = [e for e in dp.comm.allgather(err) if e]
    if errors:
        raise CLIError(errors[0])
    return out
