"""Curves and scatter plots: the training history, the latent codes."""

import numbers

import matplotlib
import numpy as np

from npvae.plot._figure import finish as _finish
from npvae.plot._figure import finite as _finite
from npvae.plot._figure import new_figure as _new_figure

__all__ = ["latent_scatter", "loss_curves"]


_PANELS = [("loss", "-ELBO (loss)"), ("recon", "reconstruction"), ("kl", "KL")]


def loss_curves(history, *, path=None):
    """Training and validation curves: -ELBO, reconstruction term, KL.

    Parameters
    ----------
    history : sequence of dict
        One dict per epoch with any of ``epoch``, ``train_loss``, ``val_loss``,
        ``train_recon``, ``val_recon``, ``train_kl``, ``val_kl``. Missing keys
        and None values are skipped; other keys are ignored. Without ``epoch``,
        epochs are numbered from 1. Non-finite values are not drawn, and the
        legend says how many there were.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(history, dict) or not hasattr(history, "__len__") or len(history) == 0:
        raise ValueError("history must be a non-empty list of per-epoch dicts, e.g. "
                         "[{'epoch': 1, 'train_loss': 180.2, 'val_loss': 175.0}, ...]")
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            raise TypeError(f"history[{i}] is a {type(row).__name__}, expected a dict")
    series = {}
    for key in [f"{split}_{name}" for name, _ in _PANELS for split in ("train", "val")]:
        points = []
        for i, row in enumerate(history):
            value = row.get(key)
            if value is None:
                continue
            if not isinstance(value, numbers.Real):
                raise TypeError(f"history[{i}][{key!r}] is {value!r}, expected a number")
            epoch = row.get("epoch", i + 1)
            if not isinstance(epoch, numbers.Real):
                raise TypeError(f"history[{i}]['epoch'] is {epoch!r}, expected a number")
            points.append((epoch, float(value)))
        if points:
            series[key] = np.array(points)
    if not series:
        raise ValueError("history has none of the keys train_loss, val_loss, train_recon, "
                         "val_recon, train_kl, val_kl; nothing to plot")
    fig = _new_figure((12.0, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (name, label) in zip(axes, _PANELS, strict=True):
        drawn = False
        for split, style in (("train", "-"), ("val", "--")):
            pts = series.get(f"{split}_{name}")
            if pts is None:
                continue
            ok = np.isfinite(pts[:, 1])
            text = "train" if split == "train" else "validation"
            if not ok.all():
                text += f" ({(~ok).sum()} non-finite not shown)"
            ax.plot(pts[ok, 0], pts[ok, 1], style, marker="o" if ok.sum() < 30 else None,
                    markersize=3, label=text)
            drawn = True
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
    return _finish(fig, path)


def latent_scatter(z, labels=None, *, path=None, title=None, label_names=None):
    """Scatter 2-D latent codes, coloured by label.

    Parameters
    ----------
    z : array_like, shape (n, 2)
        Latent codes (for example encoder means). For more dimensions pick two,
        ``z[:, [i, j]]``, or project them first.
    labels : array_like, shape (n,), optional
        Integer, bool or string labels with at most 20 distinct values get a
        legend; anything else (floats, many integers) gets a colorbar.
    path : str or os.PathLike, optional
        Save the figure as a PNG here.
    title : str, optional
    label_names : sequence or dict, optional
        Legend names for discrete labels: ``label_names[label]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    z = _finite(z, "z")
    if z.ndim != 2 or z.shape[1] != 2 or len(z) == 0:
        raise ValueError(f"z must have shape (n, 2) with n >= 1, got {z.shape}; for more "
                         "latent dimensions pass two columns, z[:, [i, j]]")
    size = float(np.clip(20000 / len(z), 2.0, 25.0))
    fig = _new_figure((7.0, 6.0))
    ax = fig.add_subplot()
    if labels is None:
        if label_names is not None:
            raise ValueError("label_names given without labels")
        ax.scatter(z[:, 0], z[:, 1], s=size, alpha=0.7, linewidths=0)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(z),):
            raise ValueError(f"labels must have shape ({len(z)},) to match z, "
                             f"got {labels.shape}")
        classes = np.unique(labels) if labels.dtype.kind in "biuUS" else None
        if classes is not None and len(classes) <= 20:
            _discrete_scatter(ax, z, labels, classes, label_names, size)
        else:
            if label_names is not None:
                raise ValueError("label_names only applies to discrete labels (integers, "
                                 "bools or strings with at most 20 distinct values)")
            if labels.dtype.kind not in "biuf":
                raise TypeError(f"labels of dtype {labels.dtype} with more than 20 "
                                "distinct values cannot be coloured; pass numbers")
            values = _finite(labels, "labels")
            points = ax.scatter(z[:, 0], z[:, 1], c=values, s=size, alpha=0.8, linewidths=0,
                                cmap="viridis")
            fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title(title or "latent space")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _discrete_scatter(ax, z, labels, classes, label_names, size):
    colors = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"].colors
    for k, cls in enumerate(classes):
        cls = cls.item()  # numpy scalar -> Python int/bool/str
        if label_names is None:
            name = str(cls)
        else:
            try:
                if not isinstance(label_names, dict) and isinstance(cls, int) and cls < 0:
                    raise IndexError(cls)  # a list would silently wrap around
                name = str(label_names[cls])
            except (KeyError, IndexError, TypeError) as exc:
                raise ValueError(f"label_names has no entry for label {cls!r}") from exc
        mask = labels == cls
        ax.scatter(z[mask, 0], z[mask, 1], s=size, alpha=0.7, linewidths=0,
                   color=colors[k % len(colors)], label=name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=max(1.0, 25 / size),
              frameon=False)
