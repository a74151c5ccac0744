"""The ``npvae`` argument parser: every command's options, their defaults and help texts.

``npvae train`` with no arguments trains a VAE on the built-in sprites (no download) and
writes a run folder with the checkpoint, the metrics and the figures. The other commands take
a run folder (or a ``.npz`` checkpoint). User errors print one line to stderr and exit with
status 2; ``main`` returns the exit status instead of raising ``SystemExit``.

The commands themselves live in :mod:`npvae.cli.commands`, the run-folder and figure helpers
in :mod:`npvae.cli.runs`.
"""

from __future__ import annotations

import argparse

from npvae.core import activations as _activations
from npvae.core import likelihoods as _likelihoods
from npvae.core.objectives import DEFAULT_K, OBJECTIVES
from npvae.training.trainer import FIT_DEFAULTS  # VAE.fit's: the two share one set

__all__ = ["build_parser", "TRAIN_DEFAULTS", "M2_DEFAULTS", "parse_hidden"]

# Defaults of the options that define a run. The parser's defaults are None, so that the
# options given on the command line can be told apart (they override a resumed run's).
TRAIN_DEFAULTS = {
    "dataset": "sprites", "data": None, "n_train": None, "n_test": None, **FIT_DEFAULTS,
    "beta": 1.0, "kl_warmup": 0.0,
    "free_bits": 0.0, "samples": 1, "latent_dim": 10, "hidden": [512],
    "activation": "relu", "likelihood": "bernoulli", "early_stopping": None,
    "clip_norm": None, "seed": 0, "threads": None, "binarize": "none", "scale": "auto",
    "cache_dir": None, "conditional": False, "objective": "elbo", "k": None,
}
# --semi-supervised: its own options, and its defaults for the model and optimisation ones
M2_DEFAULTS = {"labels": 100, "alpha": None, "n_val": None, "epochs": 100, "batch_size": 100,
               "lr": 1e-3, "latent_dim": 20, "hidden": [256], "activation": "relu"}
_M2_HELP = ", ".join(f"--{k.replace('_', '-')} {v if k != 'hidden' else v[0]}"
                     for k, v in list(M2_DEFAULTS.items())[3:])
DATASETS = ("sprites", "digits", "mnist", "fashion-mnist")
ACTIVATIONS = tuple(_activations.ACTIVATIONS)  # the registries: a new class is a new choice
LIKELIHOODS = tuple(_likelihoods.LIKELIHOODS)

_DESCRIPTION = "Variational autoencoders in NumPy with hand-written gradients."
_EPILOG = """\
Start with `npvae train` (the built-in sprites, no download), then
`npvae sample runs/<run>` and `npvae eval runs/<run>`; `npvae COMMAND --help` for a
command's options."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parse_hidden(text):
    """``"512,256"`` -> ``[512, 256]``; ``"none"`` or ``""`` -> ``[]`` (a linear VAE)."""
    text = text.strip().lower()
    if text in ("", "none", "0"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = [0]
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes like 512,256 (or none), "
            f"got {text!r}")
    return sizes


def _dataset(text):
    """A dataset name as Python's load_dataset takes it: any case, aliases such as fashion."""
    from npvae.datasets import dataset_name

    try:
        return dataset_name(text)
    except ValueError:
        return text  # argparse then lists the choices


def _int(minimum):
    def conv(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return v
    return conv


def _float(minimum, strict=False):
    def conv(text):
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not (v > minimum if strict else v >= minimum) or v == float("inf"):
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if strict else '>='} {minimum}, got {text!r}")
        return v
    return conv


def _add_data_options(p, *, train):
    d = TRAIN_DEFAULTS
    g = p.add_argument_group("data")
    run = "" if train else "the run's dataset, else "
    g.add_argument("--dataset", choices=DATASETS, type=_dataset, help=(
        f"built-in dataset (default: {run}sprites). sprites: 32x32 binary shapes (square, "
        "ellipse, heart) generated on the spot; digits: scikit-learn's 8x8 digits; mnist, "
        "fashion-mnist (or fashion): 28x28, downloaded once to the cache"))
    g.add_argument("--data", metavar="FILE", help=(
        "your own .npy (images or rows) or .npz file (data as 'x', optional integer labels "
        "as 'y'); 10%% of the rows are held out as the test set"))
    g.add_argument("--n-train", type=_int(1), metavar="N", help=(
        "use N training examples (default: all; sprites 20000)") if train else argparse.SUPPRESS)
    g.add_argument("--n-test", type=_int(1), metavar="N",
                   help="use N test examples (default: all; sprites 2000)")
    g.add_argument("--binarize", choices=("none", "threshold", "stochastic"), help=(
        f"make pixels 0/1 for the Bernoulli likelihood (default: {run}{d['binarize']}). "
        "threshold: x > 0.5; stochastic: redraw x ~ Bernoulli(x) every epoch (test set: "
        "one fixed draw)"))
    g.add_argument("--scale", help=(
        "how to bring --data values into [0, 1]: auto (uint8 / 255, [0, 1] kept), none, "
        "minmax, or the maximum value, e.g. 255 (default: auto)"))
    g.add_argument("--cache-dir", metavar="DIR", help=(
        "download cache for mnist/fashion-mnist (default: $NPVAE_DATA_DIR, else "
        "~/.cache/npvae)"))
    g.add_argument("--download-timeout", type=_float(0, strict=True), metavar="SECONDS",
                   help=("mnist/fashion-mnist downloads give up when the server sends nothing "
                         "for SECONDS, or when one file takes 10x SECONDS in all "
                         "(default: 60)"))


def build_parser():
    d = TRAIN_DEFAULTS
    parser = _Parser(prog="npvae", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from npvae import __version__
    parser.add_argument("--version", action="version", version=f"npvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)
    parser.commands = sub.choices  # name -> its parser, for errors that point to its --help

    t = sub.add_parser("train", help=(
        "train a VAE and write a run folder (checkpoint, metrics, figures)"), description=(
        "Train a VAE by maximising the ELBO, E_q[log p(x|z)] - beta * KL(q(z|x) || N(0, I)) "
        "(or the importance-weighted bound: --objective), with Adam on minibatches. Writes "
        "a run folder: checkpoint.npz, config.json, "
        "metrics.jsonl (one line per epoch) and figures (loss curves, reconstructions, "
        "samples, latent traversals; for a 2-D latent space the latent map and the decoded "
        "manifold). Ctrl-C saves a checkpoint; `npvae train --resume RUN_DIR` continues it. "
        "Started by `mpiexec -n P` (pip install 'npvae[mpi]'), the P processes train "
        "data-parallel and rank 0 writes the run folder."),
        epilog="example: npvae train --dataset digits --latent-dim 2 --epochs 50")
    _add_data_options(t, train=True)
    g = t.add_argument_group("model")
    g.add_argument("--latent-dim", type=_int(1), metavar="Z", help=(
        f"size of the latent code z; 2 also draws the latent map and manifold "
        f"(default: {d['latent_dim']})"))
    g.add_argument("--hidden", type=parse_hidden, metavar="SIZES", help=(
        "hidden layer widths of the encoder, comma-separated; the decoder mirrors them; "
        f"'none' for a linear VAE (default: {','.join(map(str, d['hidden']))})"))
    g.add_argument("--activation", choices=ACTIVATIONS, type=str.lower,
                   help=f"hidden-layer activation (default: {d['activation']})")
    g.add_argument("--likelihood", choices=LIKELIHOODS, type=str.lower, help=(
        "decoder distribution p(x|z): bernoulli for (near-)binary pixels; gaussian with "
        "variance 1, or with a learned scalar / per-pixel variance, for real values "
        f"(default: {d['likelihood']})"))
    g.add_argument("--beta", type=_float(0), help=(
        f"weight of the KL term; beta > 1 is a beta-VAE, pushing towards disentangled, "
        f"blurrier codes (default: {d['beta']:g})"))
    g.add_argument("--samples", type=_int(1), metavar="L", help=(
        f"reparameterised samples of z per example in each step (default: {d['samples']})"))
    g.add_argument("--free-bits", type=_float(0), metavar="NATS", help=(
        "minimum KL per latent dimension (nats); below it the KL is not penalised, which "
        "fights posterior collapse (default: 0)"))
    g.add_argument("--conditional", action="store_true", default=None, help=(
        "conditional VAE: feed the class label (sprites: shape; digits/MNIST: digit) as "
        "one-hot metadata to encoder and decoder; figures add a row of samples per class"))
    g = t.add_argument_group("semi-supervised (M2, Kingma et al. 2014)")
    g.add_argument("--semi-supervised", action="store_true", default=None, help=(
        "train M2 instead of a VAE: a classifier q(y|x) and a class-conditional VAE "
        "learned together from a few labels and the unlabelled rest (the sum over the "
        "classes of an unlabelled row is exact). Reports the test accuracy every epoch "
        "and, at the end, that of the epoch with the best validation accuracy, beside "
        "the same classifier trained on the labels alone. M2's own defaults: "
        f"{_M2_HELP}"))
    g.add_argument("--labels", type=_int(1), metavar="N", help=(
        "labelled training examples, N/K of each of the K classes, drawn with --seed; the "
        f"other training rows lose their labels (default: {M2_DEFAULTS['labels']})"))
    g.add_argument("--alpha", type=_float(0), help=(
        "weight of the labelled rows' cross-entropy -log q(y|x) (default: Kingma's "
        "0.1 * n_train / N)"))
    g.add_argument("--n-val", type=_int(1), metavar="N", help=(
        "labelled validation rows held out of the training set, to pick the epoch "
        "(default: 10%% of it, at most 5000)"))
    g = t.add_argument_group("optimisation")
    g.add_argument("--objective", choices=OBJECTIVES, type=str.lower, help=(
        "what to maximise: elbo; iwae, the k-sample importance-weighted bound (Burda et al.), "
        "tighter than the ELBO, E log (1/k) sum_i p(x, z_i) / q(z_i|x); iwae-dreg, the same "
        "bound with the doubly reparameterised encoder gradient (Tucker et al.), less noisy "
        f"as k grows (default: {d['objective']})"))
    g.add_argument("--k", type=_int(1), metavar="K", help=(
        "importance samples per example of --objective iwae / iwae-dreg; each step decodes "
        "L x K samples (L from --samples: L independent bounds, averaged) "
        f"(default: {DEFAULT_K})"))
    g.add_argument("--epochs", type=_int(1), help=(
        f"passes over the training set; with --resume, the total to reach "
        f"(default: {d['epochs']})"))
    g.add_argument("--batch-size", type=_int(1), metavar="N", help=(
        f"examples per gradient step; under mpiexec the global batch, split over the "
        f"processes (default: {d['batch_size']})"))
    g.add_argument("--lr", type=_float(0, strict=True),
                   help=f"Adam learning rate (default: {d['lr']:g})")
    g.add_argument("--lr-schedule", choices=("none", "cosine", "step", "exponential"), help=(
        "learning-rate decay over the run: cosine to 0, step (x0.1 at 50%% and 75%%), "
        f"exponential to 1%% (default: {d['lr_schedule']})"))
    g.add_argument("--kl-warmup", type=_float(0), metavar="EPOCHS", help=(
        "ramp the KL weight linearly from 0 to beta over this many epochs (default: 0)"))
    g.add_argument("--early-stopping", type=_int(1), metavar="PATIENCE", help=(
        "stop when the validation loss has not improved for PATIENCE epochs and keep the "
        "best epoch's weights (default: off)"))
    g.add_argument("--clip-norm", type=_float(0, strict=True), metavar="NORM",
                   help="clip the global gradient norm to NORM (default: off)")
    g.add_argument("--seed", type=_int(0), help=(
        "seeds weights, shuffling and noise; the same seed repeats a run bit for bit "
        "(default: 0; the data split never depends on it)"))
    g.add_argument("--threads", type=_int(1), metavar="N", help=(
        "cap BLAS and Numba threads (default: leave as they are; under mpiexec: the "
        "node's CPUs divided by its processes)"))
    g = t.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help=(
        "run folder to create (default: runs/<dataset>-<date>-<time>, never reused)"))
    g.add_argument("--resume", metavar="RUN", help=(
        "continue an interrupted run (a run folder or its checkpoint.npz) with its saved "
        "options; options given now override them, e.g. a larger --epochs"))
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--no-figures", action="store_true",
                   help="skip the PNG figures (faster, e.g. for sweeps)")
    g.add_argument("--quiet", action="store_true", help=(
        "no progress bars or messages; print only the run folder (for scripts)"))
    t.set_defaults(func="train")

    def ckpt_arg(p):
        p.add_argument("checkpoint", metavar="CHECKPOINT",
                       help="a run folder written by `npvae train`, or a .npz checkpoint")

    s = sub.add_parser("sample", help=(
        "draw new images from a trained model: z ~ N(0, I), decode"), description=(
        "Draw z ~ N(0, I) and decode it. Shows the mean of p(x|z) (pixel probabilities for "
        "Bernoulli) unless --draw. Writes a PNG grid (default samples.png) and/or a .npy."))
    ckpt_arg(s)
    s.add_argument("-n", type=_int(1), default=64, help="how many samples (default: 64)")
    s.add_argument("--out", metavar="PNG", help="PNG grid to write (default: samples.png "
                   "unless only --npy is given)")
    s.add_argument("--npy", metavar="FILE", help="also save the samples as a .npy array")
    s.add_argument("--seed", type=_int(0), default=0, help="seed of z (default: 0)")
    s.add_argument("--label", metavar="K", help=(
        "conditional model only: the class to generate, as an index or a name (e.g. heart); "
        "default: n/K per class, one row per class"))
    s.add_argument("--draw", action="store_true",
                   help="draw x ~ p(x|z) instead of showing its mean")
    s.set_defaults(func="sample")

    r = sub.add_parser("reconstruct", help=(
        "encode and decode test images, originals beside reconstructions"),
                       description="Encode test images to the posterior mean of q(z|x) and "
                       "decode it; writes originals above reconstructions as a PNG.")
    ckpt_arg(r)
    _add_data_options(r, train=False)
    r.add_argument("-n", type=_int(1), default=10, help="how many images (default: 10)")
    r.add_argument("--out", metavar="PNG", default="reconstructions.png",
                   help="PNG to write (default: reconstructions.png)")
    r.set_defaults(func="reconstruct")

    e = sub.add_parser("eval", help=(
        "test ELBO, importance-weighted log-likelihood, active units; --ais: AIS, q*, gaps"),
                       description="Evaluate a model on the test split: the ELBO and its "
                       "parts (reconstruction -E_q[log p(x|z)] and KL), the importance-"
                       "weighted estimate of log p(x) with k samples (a tighter lower bound), "
                       "and the active units (latent dimensions whose posterior mean varies "
                       "with x, Var > 0.01).")
    ckpt_arg(e)
    _add_data_options(e, train=False)
    e.add_argument("-k", type=_int(1), default=100, help=(
        "importance samples per example for log p(x); more is tighter and slower "
        "(default: 100)"))
    e.add_argument("--seed", type=_int(0), help=(
        "seed of the noise (default: the fixed evaluation seed that training's validation "
        "uses, so that on the run's test split the ELBO is the one `npvae train` printed)"))
    e.add_argument("--json", action="store_true", help="print one JSON object")
    g = e.add_argument_group(
        "posterior inference beyond the encoder (slower)",
        "--ais adds, on the first --ais-examples test examples: log p(x) by annealed "
        "importance sampling (AIS, from the prior to the posterior, HMC moves), ELBO(q*) of "
        "a Gaussian fitted to each example by itself (q*), and the two gaps: amortisation "
        "ELBO(q*) - ELBO(q), what a better encoder could win, and approximation "
        "log p(x) - ELBO(q*), the price of a diagonal Gaussian. Time grows with examples x "
        "steps x chains.")
    g.add_argument("--ais", action="store_true", help="run AIS and q* (see above)")
    g.add_argument("--ais-steps", type=_int(2), default=500, metavar="T", help=(
        "intermediate distributions of AIS; more is tighter (default: 500)"))
    g.add_argument("--ais-chains", type=_int(2), default=16, metavar="K",
                   help="AIS chains per example (default: 16)")
    g.add_argument("--ais-examples", type=_int(0), default=100, metavar="N", help=(
        "test examples for AIS and q* (default: 100; 0: all)"))
    e.set_defaults(func="eval")

    i = sub.add_parser("info", help=(
        "architecture, parameter count, training history of a checkpoint"),
                       description="Architecture, parameter count, dataset, options and "
                       "training history of a checkpoint.")
    ckpt_arg(i)
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func="info")
    return parser
