"""What the examples share: running from a clone without installing npvae, and the
options every example takes (``--epochs``, ``--n-train``, ``--seed``, ``--threads``,
``--out`` or ``--readme-images`` and, where a model is trained, ``--latent-dim``).

Figures go to ``runs/examples/`` under the current directory by default; the tracked
images of the README (docs/images/examples) are rewritten only with ``--readme-images``."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_IMAGES = ROOT / "docs" / "images" / "examples"  # tracked: only with --readme-images
try:
    import npvae  # noqa: F401
except ImportError:  # run from a clone without installing
    sys.path.insert(0, str(ROOT))


def parser(doc, *, epochs=10, n_train=20000, latent_dim=None):
    """An ArgumentParser described by the first line of ``doc``, with the common options;
    the caller adds its own and calls :func:`parse`."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--n-train", type=int, default=n_train)
    if latent_dim is not None:
        ap.add_argument("--latent-dim", type=int, default=latent_dim)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path("runs") / "examples",
                       help="folder for the figures, created if missing (default: "
                       "runs/examples under the current directory)")
    where.add_argument("--readme-images", action="store_const", dest="out", const=README_IMAGES,
                       help=f"write the figures over the README's, in {README_IMAGES}")
    return ap


def parse(ap, argv):
    """Parse ``argv`` and create the output folder."""
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
