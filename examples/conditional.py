"""Conditional VAE on the sprites: the shape (square / ellipse / heart) is the metadata y.

    python examples/conditional.py [--epochs 10] [--jitter 0] [--out DIR]

Trains ``VAE(cond_dim=3)`` with ``y = one_hot(shape)`` on sprites drawn with continuous
scale and rotation, centred (``--jitter r`` moves them up to r image widths off centre;
``--jitter 0.5`` uses every position, see the note in the README). Then

* ``conditional_samples.png``: one row per class, the same 10 latents z ~ N(0, I) decoded
  as each shape;
* ``conditional_swap.png``: test images encoded with their own shape, decoded as each shape;
* prints the accuracy of a nearest-neighbour shape classifier (trained on real images) on
  real test images and on 300 samples per class.
"""

import time

import _common
import numpy as np

from npvae import VAE
from npvae.apps import CenteredKNN, class_samples, one_hot
from npvae.datasets import SHAPE_NAMES, render_sprites
from npvae.plot import image_grid


def sprites(n, jitter, size, seed):
    """n sprites with continuous factors: shape, scale U(0.5, 1), rotation U(0, 2 pi),
    position U(0.5 - jitter, 0.5 + jitter) on each axis."""
    g = np.random.default_rng(seed)
    f = np.column_stack([g.integers(0, 3, n), g.uniform(0.5, 1.0, n),
                         g.uniform(0, 2 * np.pi, n), g.uniform(0.5 - jitter, 0.5 + jitter, n),
                         g.uniform(0.5 - jitter, 0.5 + jitter, n)])
    return render_sprites(f, size=size), f[:, 0].astype(np.int64)


def main(argv=None):
    ap = _common.parser(__doc__, n_train=10000, latent_dim=6)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--size", type=int, default=32)
    args = _common.parse(ap, argv)
    if not 0 <= args.jitter <= 0.5:
        ap.error("--jitter must lie in [0, 0.5]")
    t0 = time.perf_counter()

    X, labels = sprites(args.n_train, args.jitter, args.size, args.seed)
    Xt, labels_t = sprites(1000, args.jitter, args.size, args.seed + 1)
    shape = (args.size, args.size)
    clf = CenteredKNN(shape).fit(X[:5000], labels[:5000])
    print(f"shape classifier (1-NN on centred images) on 1000 real test sprites: "
          f"{clf.score(Xt, labels_t):.3f}")

    cvae = VAE(latent_dim=args.latent_dim, hidden=(512,), cond_dim=3, seed=args.seed)
    cvae.fit(X, one_hot(labels, 3), epochs=args.epochs, batch_size=64, lr=2e-3,
             progress=False, threads=args.threads)
    elbo = cvae.elbo(Xt, one_hot(labels_t, 3), rng=0).mean()
    print(f"trained in {time.perf_counter() - t0:.0f} s; test ELBO {elbo:.2f} nats")

    imgs, asked = class_samples(cvae, 300, rng=args.seed, shared_z=False)
    pred = clf.predict(imgs)
    per = [np.mean(pred[asked == k] == k) for k in range(3)]
    print(f"samples recognised as the requested shape: {np.mean(pred == asked):.3f} "
          f"(chance 0.333; " + ", ".join(f"{n} {a:.2f}" for n, a in zip(SHAPE_NAMES, per,
                                                                         strict=True)) + ")")
    # does the decoder use y? the same latents, decoded as another shape
    mu = cvae.encode(Xt[:300], one_hot(labels_t[:300], 3))[0]
    other = (labels_t[:300] + 1) % 3
    swapped = cvae.decode(mu, one_hot(other, 3))
    print(f"test images re-decoded as another shape, recognised as that shape: "
          f"{clf.score(swapped, other):.3f}")

    imgs, _ = class_samples(cvae, 10, rng=args.seed)  # the same 10 latents for each class
    image_grid(imgs, shape, ncols=10, row_labels=list(SHAPE_NAMES),
               title="CVAE samples: one row per y, the same z in each column",
               path=args.out / "conditional_samples.png")
    mu = cvae.encode(Xt[:10], one_hot(labels_t[:10], 3))[0]
    rows = [Xt[:10]] + [cvae.decode(mu, one_hot([k] * 10, 3)) for k in range(3)]
    image_grid(np.vstack(rows), shape, ncols=10,
               row_labels=["test image"] + [f"as {n}" for n in SHAPE_NAMES],
               title="z from a test image, decoded with each y",
               path=args.out / "conditional_swap.png")
    print(f"wrote conditional_samples.png and conditional_swap.png to {args.out}  "
          f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
