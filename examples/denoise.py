"""De-noising VAE on the sprites: train on corrupted inputs against clean targets, then
clean up corrupted test images; compare with a VAE trained on clean data only.

    python examples/denoise.py [--corruption salt-pepper] [--level 0.2] [--epochs 10]

Writes ``denoise.png`` (noisy / de-noising VAE / plain VAE / clean rows) and prints the
MSE to the clean images for every kind of corruption.
"""

import time

import _common
import numpy as np

from npvae import VAE
from npvae.apps import CORRUPTIONS, corrupt
from npvae.datasets import load_dataset
from npvae.plot import image_grid

LEVELS = {"mask": 0.5, "salt-pepper": 0.2, "gaussian": 0.5}


def main(argv=None):
    ap = _common.parser(__doc__)
    ap.add_argument("--corruption", choices=CORRUPTIONS, default="salt-pepper")
    ap.add_argument("--level", type=float, default=None,
                    help="corruption strength (default: mask 0.5, salt-pepper 0.2, "
                         "gaussian 0.5)")
    args = _common.parse(ap, argv)
    level = LEVELS[args.corruption] if args.level is None else args.level
    t0 = time.perf_counter()

    ds = load_dataset("sprites", n_train=args.n_train, n_test=2000, seed=args.seed)
    kw = {"epochs": args.epochs, "batch_size": 128, "lr": 2e-3, "progress": False,
          "threads": args.threads}
    dvae = VAE(latent_dim=10, hidden=(512,), seed=args.seed)
    dvae.fit(ds.x_train, corruption=args.corruption, corruption_level=level, **kw)
    t1 = time.perf_counter()
    plain = VAE(latent_dim=10, hidden=(512,), seed=args.seed).fit(ds.x_train, **kw)
    t2 = time.perf_counter()
    print(f"trained the de-noising VAE ({args.corruption} {level:g}) in {t1 - t0:.0f} s "
          f"and the plain VAE in {t2 - t1:.0f} s")

    T = ds.x_test
    print(f"MSE to the clean test images (2000 x {T.shape[1]} pixels):")
    print(f"  {'corruption':18s} {'noisy input':>11s} {'de-noising VAE':>15s} "
          f"{'plain VAE':>10s}")
    for kind in CORRUPTIONS:
        lv = level if kind == args.corruption else LEVELS[kind]
        noisy = corrupt(T, kind, lv, rng=args.seed + 1)
        e = [float(np.mean((a - T) ** 2)) for a in (noisy, dvae.denoise(noisy),
                                                     plain.denoise(noisy))]
        print(f"  {kind + ' ' + format(lv, 'g'):18s} {e[0]:11.4f} {e[1]:15.4f} {e[2]:10.4f}")
    e = [float(np.mean((m.reconstruct(T) - T) ** 2)) for m in (dvae, plain)]
    print(f"  {'none (clean input)':18s} {0:11.4f} {e[0]:15.4f} {e[1]:10.4f}")

    noisy = corrupt(T[:10], args.corruption, level, rng=args.seed + 1)
    image_grid(np.vstack([noisy, dvae.denoise(noisy), plain.denoise(noisy), T[:10]]),
               ds.image_shape, ncols=10, clip=True,
               row_labels=["noisy", "de-noising VAE", "plain VAE", "clean"],
               title=f"{args.corruption} noise ({level:g})", path=args.out / "denoise.png")
    print(f"wrote {args.out / 'denoise.png'}  (total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
