"""The command line's user errors: :class:`CLIError` (printed as one line, exit status 2)
and the one-line messages of exceptions and OS errors."""

from __future__ import annotations


class CLIError(Exception):
    """A user error: the CLI prints the message (one line) and exits with status 2."""


def one_line(exc):
    """An exception's message on one line (and not endless: a file may put megabytes in it)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 2000 else text[:2000] + "..."


def describe_os_error(exc):
    """One line for an OSError: the file, the reason and what to do."""
    import errno

    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or one_line(exc) or type(exc).__name__
    hint = {errno.ENOSPC: "free some disk space or pass another --out (a checkpoint "
                          "already written is intact)",
            errno.EDQUOT: "free some disk space (a checkpoint already written is intact)",
            errno.EACCES: "pass a folder you can write to",
            errno.EPERM: "pass a folder you can write to",
            errno.EROFS: "the file system is read-only; pass another folder",
            errno.ENOENT: "check the path (its folder must exist)",
            errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.EISDIR: "pass a file, not a folder"}.get(exc.errno, "check the path")
    return f"{where}: {reason}; {hint}" if where else f"{reason}; {hint}"
