"""beta-VAE on the sprites and the Mutual Information Gap (MIG) of each beta.

    python examples/disentangle.py [--betas 1 4 10] [--epochs 8] [--out DIR]

Trains one VAE per beta on the built-in sprites (shape, scale, rotation, x, y are known),
then reports the ELBO on the test set (beta = 1 bound, nats) and MIG (Chen et al. 2018)
of the posterior means against the true factors. Writes ``disentangle_mig.png`` (MIG and
the ELBO against beta, with the MIG gap of every factor) and ``disentangle_traversals.png``
(for each beta, its five latents with the largest KL, traversed from -2.5 to 2.5 around
the posterior mean of a test image, and labelled with the factor each shares the most
information with).
"""

import time

import _common
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from npvae import VAE
from npvae.apps import mig, traverse
from npvae.datasets import load_dataset
from npvae.inference.metrics import kl_per_dimension


def main(argv=None):
    ap = _common.parser(__doc__, epochs=12, latent_dim=8)
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0, 10.0])
    args = _common.parse(ap, argv)
    t_start = time.perf_counter()

    ds = load_dataset("sprites", n_train=args.n_train, n_test=2000, seed=args.seed)
    # MIG on 10,000 training images: more rows, less bias in the histogram estimate
    n_mig = min(10000, args.n_train)
    X_mig, V_mig = ds.x_train[:n_mig], ds.factor_classes_train[:n_mig]
    names = ds.factor_names
    results = []
    for beta in args.betas:
        t0 = time.perf_counter()
        vae = VAE(latent_dim=args.latent_dim, hidden=(256,), beta=beta, seed=args.seed)
        vae.fit(ds.x_train, epochs=args.epochs, batch_size=128, lr=2e-3, progress=False,
                threads=args.threads, seed=args.seed)
        elbo = float(vae.elbo(ds.x_test, rng=0).mean())
        kl = float(vae.history_[-1]["train_kl"])
        score, info = mig(vae.transform(X_mig), V_mig, return_details=True)
        secs = time.perf_counter() - t0
        results.append({"beta": beta, "elbo": elbo, "kl": kl, "mig": score, "info": info,
                        "model": vae})
        print(f"beta {beta:4g}: test ELBO {elbo:7.2f} nats, train KL {kl:5.2f}, "
              f"MIG {score:.3f}  [{secs:.0f} s]", flush=True)
        top = -np.sort(-info["normalized_mi"], axis=0)[:2]
        print("    normalised MI of the best / second-best latent per factor: "
              + ", ".join(f"{n} {a:.2f}/{b:.2f}" for n, a, b in zip(names, *top, strict=True)))

    # ---- figure 1: MIG and ELBO against beta, gap per factor
    fig = Figure(figsize=(11, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    betas = [r["beta"] for r in results]
    ax1.plot(betas, [r["mig"] for r in results], "o-")
    ax1.set(xlabel="beta", ylabel="MIG", title="Mutual Information Gap", xscale="log")
    ax2.plot(betas, [r["elbo"] for r in results], "o-", color="C1")
    ax2.set(xlabel="beta", ylabel="nats", title="test ELBO (beta = 1 bound)", xscale="log")
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        ax3.bar(np.arange(len(names)) + (i - (len(results) - 1) / 2) * width, r["info"]["gap"],
                width, label=f"beta {r['beta']:g}")
    ax3.set_xticks(np.arange(len(names)), names)
    ax3.set(ylabel="normalised MI gap", title="gap per factor")
    ax3.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.grid(alpha=0.3)
    fig.savefig(args.out / "disentangle_mig.png")

    # ---- figure 2: for each beta, traverse its five most used latents around a test image
    h, w = ds.image_shape
    values = np.linspace(-2.5, 2.5, 9)
    rows, labels = [], []
    for r in results:
        kl_dims = kl_per_dimension(r["model"], ds.x_test)
        dims = [int(d) for d in np.argsort(-kl_dims)[:5]]
        _, imgs = traverse(r["model"], ds.x_test[3], dims=dims, values=values)
        rows.append(imgs)
        nmi = r["info"]["normalized_mi"]
        for d in dims:
            k = int(np.argmax(nmi[d]))
            labels.append(f"beta {r['beta']:g}, z{d}: KL {kl_dims[d]:.1f}, "
                          f"{names[k]} {nmi[d, k]:.2f}")
    mosaic = np.vstack(rows).reshape(len(labels), len(values), h, w)
    fig = Figure(figsize=(8.5, 0.62 * len(labels) + 0.8), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pad = np.pad(mosaic, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=0.5)
    ax.imshow(pad.transpose(0, 2, 1, 3).reshape(len(labels) * (h + 2), len(values) * (w + 2)),
              cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks((np.arange(len(labels)) + 0.5) * (h + 2), labels, fontsize=8)
    ax.set_xticks((np.arange(len(values)) + 0.5) * (w + 2), [f"{v:.2g}" for v in values],
                  fontsize=8)
    ax.set_title("five latents with the largest KL per beta, traversed around a test image\n"
                 "(label: the factor with the highest normalised MI, and that MI)", fontsize=9)
    fig.savefig(args.out / "disentangle_traversals.png")
    print(f"wrote {args.out / 'disentangle_mig.png'} and {args.out / 'disentangle_traversals.png'}"
          f"  (total {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
