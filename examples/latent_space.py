"""Latent-space tools on the sprites: a 2-D map of the posterior means, interpolation
(linear and spherical) between two test images, and traversals of every latent.

    python examples/latent_space.py [--epochs 10] [--out DIR]

Writes ``latent_map.png`` (PCA of the posterior means, coloured by shape and by x
position), ``latent_interpolation.png`` and ``latent_traversal.png``.
"""

import time

import _common
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from npvae import VAE
from npvae.apps import interpolate, latent_map, traverse
from npvae.datasets import load_dataset
from npvae.plot import image_grid, traversal_figure


def main(argv=None):
    ap = _common.parser(__doc__, latent_dim=8)
    args = _common.parse(ap, argv)
    t0 = time.perf_counter()

    ds = load_dataset("sprites", n_train=args.n_train, n_test=2000, seed=args.seed)
    vae = VAE(latent_dim=args.latent_dim, hidden=(256,), seed=args.seed)
    vae.fit(ds.x_train, epochs=args.epochs, batch_size=128, lr=2e-3, progress=False,
            threads=args.threads)
    print(f"trained in {time.perf_counter() - t0:.0f} s; test ELBO "
          f"{vae.elbo(ds.x_test, rng=0).mean():.2f} nats")

    # ---- map: PCA of the posterior means, coloured by shape, and by x position
    res = latent_map(vae, ds.x_test, labels=ds.y_test, label_names=ds.label_names,
                     title="posterior means (PCA), coloured by shape")
    ratio = res.explained_variance_ratio
    print(f"latent map: {res.method}, PC1 and PC2 explain {100 * ratio[0]:.0f}% and "
          f"{100 * ratio[1]:.0f}% of the posterior means' variance")
    fig = Figure(figsize=(11, 4.6), dpi=85, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, k, title in ((axes[0], 0, "coloured by shape"), (axes[1], 3, "coloured by x")):
        if k == 0:
            for c, name in enumerate(ds.label_names):
                sel = ds.y_test == c
                ax.scatter(*res.coords[sel].T, s=5, alpha=0.6, label=name, linewidths=0)
            ax.legend(markerscale=3)
        else:
            pts = ax.scatter(*res.coords.T, c=ds.factors_test[:, k], s=5, cmap="viridis",
                             linewidths=0)
            fig.colorbar(pts, ax=ax, label="x position (0 = left)")
        ax.set(xlabel=f"PC1 ({100 * ratio[0]:.0f}%)", ylabel=f"PC2 ({100 * ratio[1]:.0f}%)",
               title=f"posterior means, {title}")
        ax.grid(alpha=0.3)
    fig.savefig(args.out / "latent_map.png")
    # correlation of the two axes with the true factors
    for k, name in enumerate(ds.factor_names[1:], start=1):
        c = [abs(np.corrcoef(res.coords[:, i], ds.factors_test[:, k])[0, 1]) for i in (0, 1)]
        print(f"  |corr| of PC1, PC2 with {name:8s}: {c[0]:.2f}, {c[1]:.2f}")

    # ---- interpolation between two test images: linear and slerp
    a, b = ds.x_test[1], ds.x_test[7]
    z_lin, im_lin = interpolate(vae, a, b, 10, "linear")
    z_sph, im_sph = interpolate(vae, a, b, 10, "slerp")
    print("  |z| along the linear path:", np.round(np.linalg.norm(z_lin, axis=1), 2))
    print("  |z| along the slerp path: ", np.round(np.linalg.norm(z_sph, axis=1), 2))
    image_grid(np.vstack([im_lin, im_sph]), ds.image_shape, ncols=10,
               row_labels=["linear", "slerp"], title="interpolation between two test images",
               path=args.out / "latent_interpolation.png")

    # ---- traversal of every latent around one test image
    values = np.linspace(-3, 3, 9)
    _, imgs = traverse(vae, ds.x_test[1], values=values)
    traversal_figure(imgs, ds.image_shape, args.latent_dim, len(values), values=values,
                     path=args.out / "latent_traversal.png")
    print(f"wrote latent_map.png, latent_interpolation.png, latent_traversal.png to {args.out}"
          f"  (total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
