"""The figures of a command-line run: loss curves, reconstructions, samples (by class for
a conditional model), latent traversals and, for a 2-D latent space, the latent map and
the manifold."""

from __future__ import annotations

import os

import numpy as np

from npvae.cli.data import image_shape_for, one_hot


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
