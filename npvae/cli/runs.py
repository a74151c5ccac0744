"""Run folders for the command line: checkpoints, metrics and config files; the data of
a run (:mod:`npvae.cli.data`), its figures (:mod:`npvae.cli.figures`) and the user errors
(:mod:`npvae.cli.errors`) are re-exported here.

A run folder holds ``checkpoint.npz`` (the training checkpoint, resumable), ``config.json``
(CLI options, model config, dataset, versions, result), ``metrics.jsonl`` (one JSON line per
epoch) and PNG figures. Everything here is used by :mod:`npvae.cli`; user errors are raised
as :class:`CLIError` with a message that names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time

import numpy as np

from npvae.cli.data import (  # noqa: F401 (re-exported: the CLI's data)
    DATA_SEED,
    MAX_CLASSES,
    class_info,
    image_shape_for,
    load_data,
    one_hot,
)
from npvae.cli.errors import CLIError, describe_os_error, one_line  # noqa: F401
from npvae.cli.figures import make_figures  # noqa: F401 (re-exported: a run's figures)

__all__ = ["CLIError", "CHECKPOINT", "CONFIG", "METRICS", "new_run_dir", "resolve_checkpoint",
           "run_lock", "remove_stale_temporaries", "one_line", "describe_os_error",
           "read_run_config", "load_model", "load_data", "one_hot", "write_json",
           "write_metrics", "make_figures", "versions", "final_elbo", "image_shape_for"]

CHECKPOINT, CONFIG, METRICS = "checkpoint.npz", "config.json", "metrics.jsonl"
MAX_CONFIG_BYTES = 16 << 20  # a run's config.json is a few KB


# ----------------------------------------------------------------------------- run folders
def new_run_dir(root, dataset):
    """Create and return ``root/<dataset>-<YYYYmmdd-HHMMSS>[-k]``; never reuses a folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(root, exist_ok=True)
    for k in range(1000):
        path = os.path.join(root, f"{dataset}-{stamp}" + (f"-{k + 1}" if k else ""))
        try:
            os.mkdir(path)  # atomic: two runs in the same second get different folders
            return path
        except FileExistsError:
            continue
    raise CLIError(f"could not create a new run folder in {root}; pass --out DIR")


def dataset_info(ds, x_test, classes):
    """What a run's config.json says about its data."""
    return {"name": ds.name, "n_train": len(ds.x_train), "n_test": len(x_test),
            "n_features": int(ds.x_train.shape[1]),
            "image_shape": list(ds.image_shape) if ds.image_shape else None,
            "label_names": list(ds.label_names) if ds.label_names else None,
            "has_labels": ds.y_train is not None,
            "classes": classes[1] if classes else None}


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold an exclusive lock on a run folder for the block (``fcntl.flock`` on the folder
    itself, so no file is added; the kernel drops it when the process dies, even by
    SIGKILL), then remove the temporary files a killed writer left behind. A second
    ``npvae train`` on the same folder gets a CLIError instead of silently overwriting the
    first one's results."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CLIError(f"another `npvae train` is writing to {run_dir}; wait for it to "
                           "finish or pass another --out") from None
        remove_stale_temporaries(run_dir)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temporaries(run_dir):
    """Delete the temporary files of interrupted writes (``.checkpoint.npz.*.tmp``,
    ``config.json.tmp<pid>``, ...); call only while holding :func:`run_lock`."""
    names = (CHECKPOINT, CONFIG, METRICS)
    for name in os.listdir(run_dir):
        stale = (name.startswith(f".{CHECKPOINT}.") and name.endswith(".tmp")) or any(
            name.startswith(f"{n}.tmp") for n in names)
        if stale:
            try:
                os.unlink(os.path.join(run_dir, name))
            except OSError:
                pass


def resolve_checkpoint(arg):
    """``(checkpoint_path, run_dir or None)`` for a run folder or a ``.npz`` path."""
    path = os.fspath(arg)
    if os.path.isdir(path):
        ckpt = os.path.join(path, CHECKPOINT)
        if not os.path.isfile(ckpt):
            raise CLIError(f"{path} is a folder without {CHECKPOINT}; pass a run folder "
                           "written by `npvae train` or the path of a .npz checkpoint")
        return ckpt, path
    if not os.path.exists(path):
        raise CLIError(f"no such checkpoint: {path}; pass a run folder written by "
                       "`npvae train` (e.g. runs/sprites-...) or a .npz checkpoint")
    folder = os.path.dirname(os.path.abspath(path))
    return path, folder if os.path.isfile(os.path.join(folder, CONFIG)) else None


def read_run_config(run_dir):
    """The ``config.json`` of a run folder as a dict ({} when there is none), its known
    sections checked for type (see :mod:`npvae.cli.runconfig`)."""
    from npvae.cli.runconfig import check_run_config
    from npvae.core.safe_npz import UnsafeFileError, open_regular

    if run_dir is None:
        return {}
    path = os.path.join(run_dir, CONFIG)
    if not os.path.lexists(path):
        return {}
    fix = "delete it (the checkpoint still works) and pass --dataset/--data explicitly"
    try:
        with open_regular(path) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        cfg = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise CLIError(f"{path} is damaged (nested too deeply); {fix}") from None
    except (OSError, ValueError) as exc:  # UnsafeFileError and UnicodeError are ValueErrors
        what = one_line(exc) if not isinstance(exc, UnsafeFileError) else "not a regular file"
        raise CLIError(f"{path} is damaged ({what}); {fix}") from None
    if not isinstance(cfg, dict):
        raise CLIError(f"{path} is damaged (not a JSON object); {fix}")
    problem = check_run_config(cfg)
    if problem:
        raise CLIError(f"{path} is damaged ({problem}); {fix}")
    return cfg


def load_model(ckpt):
    """``(model, checkpoint config)``: a :class:`~npvae.VAE` holding the weights the run
    ended with (the best epoch's when early stopping kept them, as ``fit`` does)."""
    from npvae.training.checkpoint import CheckpointError, load_checkpoint
    from npvae.training.estimator import VAE

    try:
        kind = _kind(ckpt)
        if kind in ("npvae.M2", "npvae.M1M2"):
            raise CLIError(f"{ckpt} holds a semi-supervised model ({kind}), which this "
                           "command does not take; its figures are in its run folder, and "
                           "Python loads it with npvae.SemiSupervisedVAE.load (M1M2.load)")
        model = VAE.load(ckpt)  # the best epoch's weights, as fit leaves them
        _, config, _ = load_checkpoint(ckpt)
    except CheckpointError as exc:
        raise CLIError(f"{one_line(exc)}; the checkpoint is unusable: point to another one "
                       "or train again") from exc
    except OSError as exc:
        raise CLIError(f"cannot read {ckpt}: {exc.strerror or exc}") from exc
    return model, config


class _Kind(Exception):
    pass


def _kind(ckpt):
    """The kind a checkpoint's (validated) metadata names, read without its arrays."""
    from npvae.training.checkpoint import load_checkpoint

    def stop(meta):
        raise _Kind(meta["kind"])

    try:
        load_checkpoint(ckpt, check=stop)
    except _Kind as found:
        return found.args[0]
    return None


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically (temp file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def write_metrics(path, history):
    """One JSON object per line, one line per epoch of ``history``."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in history:
            f.write(json.dumps(rec, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def versions():
    """Versions of npvae, Python and the libraries a run depends on."""
    import matplotlib
    import numba
    import scipy
    import tqdm

    from npvae import __version__
    return {"npvae": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__,
            "matplotlib": matplotlib.__version__, "tqdm": tqdm.__version__,
            "platform": platform.platform()}


def final_elbo(history, best_epoch=None):
    """The record the final model corresponds to, and its validation ELBO (or None)."""
    done = [r for r in history if not r.get("interrupted") and r.get("val_recon") is not None]
    if not done:
        return None, None
    rec = next((r for r in done if r["epoch"] == best_epoch), done[-1])
    return rec, -(rec["val_recon"] + rec["val_kl"])


def print_err(msg):
    print(msg, file=sys.stderr)
