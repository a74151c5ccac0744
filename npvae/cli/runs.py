"""Run folders for the command line: data loading from CLI options, checkpoints, metrics,
config files and the figures of a run.

A run folder holds ``checkpoint.npz`` (the training checkpoint, resumable), ``config.json``
(CLI options, model config, dataset, versions, result), ``metrics.jsonl`` (one JSON line per
epoch) and PNG figures. Everything here is used by :mod:`npvae.cli`; user errors are raised
as :class:`CLIError` with a message that names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time

import numpy as np

__all__ = ["CLIError", "CHECKPOINT", "CONFIG", "METRICS", "new_run_dir", "resolve_checkpoint",
           "run_lock", "remove_stale_temporaries", "one_line", "describe_os_error",
           "read_run_config", "load_model", "load_data", "one_hot", "write_json",
           "write_metrics", "make_figures", "versions", "final_elbo", "image_shape_for"]

CHECKPOINT, CONFIG, METRICS = "checkpoint.npz", "config.json", "metrics.jsonl"
MAX_CONFIG_BYTES = 16 << 20  # a run's config.json is a few KB
MAX_CLASSES = 10_000  # one-hot columns --conditional may build
DATA_SEED = 0  # the data draw and split never depend on --seed, so runs compare on one test set


class CLIError(Exception):
    """A user error: the CLI prints the message (one line) and exits with status 2."""


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
        model = VAE.load(ckpt)  # the best epoch's weights, as fit leaves them
        _, config, _ = load_checkpoint(ckpt)
    except CheckpointError as exc:
        raise CLIError(f"{one_line(exc)}; the checkpoint is unusable: point to another one "
                       "or train again") from exc
    except OSError as exc:
        raise CLIError(f"cannot read {ckpt}: {exc.strerror or exc}") from exc
    return model, config


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


# ----------------------------------------------------------------------------- data
def load_data(opts, *, progress=True):
    """Load the dataset that ``opts`` (a dict of CLI options) describes.

    The split depends on ``n_train`` too (sprites draw train and test together), so
    ``eval`` passes the run's ``n_train`` to get the run's test set.

    Returns ``(dataset, x_test)``: ``x_test`` is binarised the way the options say
    (``stochastic``: one fixed draw), so figures, validation and ``eval`` see the same data.
    ``dataset.x_train`` is thresholded for ``--binarize threshold`` and left for ``fit`` to
    redraw every epoch with ``stochastic``.
    """
    from npvae.datasets import DownloadError, binarize_array, load_dataset

    name, data = opts.get("dataset") or "sprites", opts.get("data")
    n_train, n_test = opts.get("n_train"), opts.get("n_test")
    try:
        if data is not None:
            ds = _load_file(data, opts.get("scale") or "auto", n_train, n_test)
        else:
            if opts.get("scale") not in (None, "auto"):
                raise CLIError("--scale applies to --data files only; the built-in datasets "
                               "are already scaled to [0, 1]")
            ds = load_dataset(name, seed=DATA_SEED, cache_dir=opts.get("cache_dir"),
                              n_train=n_train, n_test=n_test, progress=progress,
                              timeout=opts.get("download_timeout") or 60.0)
    except FileNotFoundError as exc:
        raise CLIError(f"no such data file: {exc.filename or data}; pass an existing .npy "
                       "or .npz file to --data") from exc
    except DownloadError as exc:
        raise CLIError(f"{one_line(exc)} (the command line's cache folder is --cache-dir "
                       "or $NPVAE_DATA_DIR)") from exc
    except ImportError as exc:
        raise CLIError(one_line(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc)) from exc
    if len(ds.x_test) == 0:
        raise CLIError(f"the {ds.name} test split is empty; pass --n-test N with N >= 1")
    binarize = opts.get("binarize") or "none"
    x_test = ds.x_test
    if binarize == "threshold":
        ds.x_train = binarize_array(ds.x_train, "threshold")
        x_test = binarize_array(x_test, "threshold")
    elif binarize == "stochastic":
        for part, x in (("training", ds.x_train), ("test", x_test)):
            if x.min() < 0 or x.max() > 1:
                raise CLIError(f"--binarize stochastic draws Bernoulli(x) and needs values in "
                               f"[0, 1], but the {part} data spans [{x.min():g}, {x.max():g}]; "
                               "pass --scale auto, minmax or the maximum value instead of "
                               "--scale none")
        x_test = binarize_array(x_test, "stochastic",
                                rng=np.random.default_rng([DATA_SEED, 0xB1]))
    return ds, x_test


def _load_file(path, scale, n_train, n_test):
    """``load_dataset("file", data=path)`` with the run's seed, ``--scale`` and sizes."""
    from npvae.datasets import load_dataset

    if isinstance(scale, str) and scale not in ("auto", "none", "minmax"):
        try:
            scale = float(scale)
        except ValueError:
            raise CLIError(f"--scale must be auto, none, minmax or a number (the data's "
                           f"maximum, e.g. 255), got {scale!r}") from None
    ds = load_dataset("file", data=path, seed=DATA_SEED, n_train=n_train, n_test=n_test,
                      scale=scale)
    if len(ds.x_train) < 1:
        raise CLIError(f"{path} leaves no training rows; pass a smaller --n-test")
    return ds


def class_info(ds):
    """``(n_classes, names)`` of a dataset's integer class labels, for ``--conditional``."""
    y = ds.y_train
    if y is None:
        raise CLIError("--conditional needs class labels, and this data has none; for a "
                       "--data .npz file, save integer labels as 'y' beside 'x'")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CLIError(f"--conditional needs one integer class label per row, got labels of "
                       f"shape {y.shape} and dtype {y.dtype}")
    lo = min(int(y.min()), int(ds.y_test.min()) if ds.y_test is not None else 0)
    if lo < 0:
        raise CLIError("--conditional needs class labels 0, 1, ..., K-1; found a negative one")
    n = int(max(y.max(), ds.y_test.max() if ds.y_test is not None else 0)) + 1
    if n > MAX_CLASSES or n > len(y) + (0 if ds.y_test is None else len(ds.y_test)):
        raise CLIError(f"--conditional one-hot encodes the labels 0..K-1, and the labels go up "
                       f"to {n - 1}: that would be {n} columns for {len(y)} training rows "
                       f"(at most {MAX_CLASSES}, and not more than the rows); re-number the "
                       "classes 0..K-1, e.g. y = np.unique(y, return_inverse=True)[1]")
    names = list(ds.label_names) if ds.label_names and len(ds.label_names) >= n \
        else [str(i) for i in range(n)]
    return n, names


def one_hot(labels, n, dtype=np.float32):
    out = np.zeros((len(labels), n), dtype=dtype)
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1
    return out


def image_shape_for(dim, shape=None):
    """``shape`` if given, else a square side for ``dim`` features, else None."""
    if shape:
        return tuple(int(s) for s in shape)
    side = math.isqrt(int(dim))
    return (side, side) if side * side == dim else None


# ----------------------------------------------------------------------------- figures
def make_figures(run_dir, model, history, x_test, labels=None, *, image_shape=None,
                 classes=None, label_names=None, seed=0):
    """Write the figures of a run; return the file names written.

    ``labels``: integer class of each test row (colours the 2-D latent map, and is the
    metadata of a conditional model); ``classes``: ``(n_classes, names)`` for a
    conditional model, whose samples then come one row per class.
    """
    from npvae import plot

    out, rng = [], np.random.default_rng(seed)

    def path(name):
        out.append(name)
        return os.path.join(run_dir, name)

    if history:
        plot.loss_curves(history, path=path("loss_curves.png"))
    shape = image_shape_for(model.input_dim, image_shape)
    cond = classes is not None
    y_test = one_hot(labels, classes[0]) if cond else None
    if shape is None:
        return out
    n = min(20, len(x_test))  # two pairs of rows
    yb = None if y_test is None else y_test[:n]
    plot.reconstruction_figure(x_test[:n], model.reconstruct(x_test[:n], yb), shape,
                               n=n, clip=True, path=path("reconstructions.png"))
    ys = one_hot(np.arange(64) % classes[0], classes[0]) if cond else None
    plot.image_grid(model.sample(64, y=ys, rng=rng), shape, ncols=8, title="samples",
                    clip=True, path=path("samples.png"))
    if cond:
        k, names = classes
        per = 10
        yk = one_hot(np.repeat(np.arange(k), per), k)
        plot.image_grid(model.sample(k * per, y=yk, rng=rng), shape, ncols=per, clip=True,
                        title="samples by class", row_labels=list(names)[:k],
                        path=path("samples_by_class.png"))
    # traverse around a larger-than-typical example (75th percentile of ink among the first
    # 64): small shapes are a few pixels and make every row look alike
    ink = x_test[:64].sum(axis=1)
    i = int(np.argsort(ink, kind="stable")[int(0.75 * (len(ink) - 1))])
    _traversals(model, x_test[i:i + 1], None if y_test is None else y_test[i:i + 1], shape,
                path("traversals.png"))
    if model.latent_dim == 2:
        mu = model.encode(x_test, y_test)[0]
        names = label_names if labels is not None and label_names else None
        if names is not None and len(names) <= int(np.max(labels)):
            names = None
        plot.latent_scatter(mu, labels, label_names=names, path=path("latent_map.png"),
                            title="encoded test set (posterior means)")
        grid, extent = 15, (-2.5, 2.5, -2.5, 2.5)
        z = plot.manifold_latents(grid, extent).astype(model.dtype)
        yz = one_hot(np.zeros(len(z), int), classes[0]) if cond else None
        plot.manifold_figure(model.decode(z, yz), shape, grid, extent=extent, clip=True,
                             path=path("manifold.png"))
    return out


def _traversals(model, x0, y0, shape, path, steps=9, limit=16):
    """A row per latent dimension: z = mu(x0) with z_j swept over -3..3."""
    from npvae import plot
    from npvae.inference.metrics import kl_per_dimension

    values = np.linspace(-3.0, 3.0, steps)
    mu = model.encode(x0, y0)[0][0]
    zdim = model.latent_dim
    dims = np.arange(zdim)
    if zdim > limit:  # show the dimensions the model uses most
        dims = np.sort(np.argsort(-kl_per_dimension(model, x0, y0))[:limit])
    z = np.repeat(mu[None, :], len(dims) * steps, axis=0)
    for r, j in enumerate(dims):
        z[r * steps:(r + 1) * steps, j] = values
    y = None if y0 is None else np.repeat(y0, len(z), axis=0)
    images = model.decode(z.astype(model.dtype), y)
    if zdim <= limit:
        return plot.traversal_figure(images, shape, zdim, steps, values=values, clip=True,
                                     path=path)
    return plot.image_grid(images, shape, ncols=steps, clip=True, path=path,
                           row_labels=[f"z{j}" for j in dims],
                           title=f"latent traversals, -3..3 ({limit} of {zdim} dimensions)")


def print_err(msg):
    print(msg, file=sys.stderr)
