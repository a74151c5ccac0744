"""Matplotlib figures for VAEs: image grids, reconstructions, curves, latent maps.

Every function is pure: it takes arrays, builds a new `matplotlib.figure.Figure`
with an Agg canvas (pyplot and its global state are never touched, so this works
on headless machines and inside other programs' figures), optionally saves a PNG
to ``path``, and returns the Figure.

Images come as flat rows, shape ``(n, h * w)``, with ``image_shape=(h, w)``, and
values in [0, 1] (pass ``clip=True`` to clip other values instead of raising).
The image figures are :mod:`npvae.plot.images`, the curves and scatter plots
:mod:`npvae.plot.charts`.
"""

from npvae.plot.charts import latent_scatter, loss_curves
from npvae.plot.images import (
    image_grid,
    manifold_figure,
    manifold_latents,
    reconstruction_figure,
    traversal_figure,
)

__all__ = [
    "image_grid",
    "latent_scatter",
    "loss_curves",
    "manifold_figure",
    "manifold_latents",
    "reconstruction_figure",
    "traversal_figure",
]
