"""The commands of :mod:`npvae.cli`. Each takes the parsed arguments and returns an exit
status, raising :class:`npvae.cli.runs.CLIError` for user errors."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from npvae.cli import runs
from npvae.cli.runs import CHECKPOINT, CONFIG, METRICS, CLIError

__all__ = ["train", "sample", "reconstruct", "eval", "info"]

_RUN_ONLY = ("out", "resume", "no_progress", "no_figures", "quiet", "func", "command",
             "download_timeout")


def _say(args, msg):
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _plain_warnings():
    """Show warnings as one 'warning: ...' line instead of file:line source dumps."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, *a, **k: print(f"warning: {m}", file=sys.stderr)
        yield


def _explicit(args):
    return {k: v for k, v in vars(args).items() if v is not None and k not in _RUN_ONLY}


# ----------------------------------------------------------------------------- train
def _train_options(args):
    """``(options, run_dir or None, resuming)`` from the arguments (and a resumed run)."""
    from npvae.cli.parser import TRAIN_DEFAULTS

    given = _explicit(args)
    if args.resume is None:
        opts = {**TRAIN_DEFAULTS, **given}
        if opts["data"] is not None:
            if given.get("dataset") not in (None, "file"):
                raise CLIError("pass either --dataset or --data FILE, not both")
            opts["dataset"] = "file"
            if not os.path.exists(opts["data"]):
                raise CLIError(f"no such data file: {opts['data']}; pass an existing .npy or "
                               ".npz file to --data")
            if not os.path.isfile(opts["data"]):
                raise CLIError(f"--data {opts['data']} is not a regular file (a folder, FIFO "
                               "or device); pass a .npy or .npz file")
        return opts, None, False
    if args.out is not None:
        raise CLIError("--resume continues the run in its own folder; drop --out")
    ckpt, run_dir = runs.resolve_checkpoint(args.resume)
    saved = runs.read_run_config(run_dir).get("options")
    if run_dir is None or not saved or os.path.basename(ckpt) != CHECKPOINT:
        raise CLIError(f"{args.resume} is not a run folder written by `npvae train` (it needs "
                       f"{CONFIG} and {CHECKPOINT}); resume other checkpoints from Python "
                       "with VAE.fit(..., checkpoint_path=..., resume=True)")
    for key in ("dataset", "data", "conditional"):
        if key in given and given[key] != saved.get(key):
            raise CLIError(f"--{key.replace('_', '-')} cannot change when resuming (the run "
                           f"used {saved.get(key)!r}); start a new run instead")
    return {**TRAIN_DEFAULTS, **saved, **given}, run_dir, True


def _check_out(out):
    if out is None:
        return
    if not out.strip():
        raise CLIError("--out needs a folder name, got an empty string")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file; pass a folder")


def _prepare_run_dir(args, opts, stack):
    """Create the run folder (or take the resumed one) and hold its lock in ``stack``."""
    out = runs.new_run_dir("runs", opts["dataset"]) if args.out is None else args.out
    os.makedirs(out, exist_ok=True)
    stack.enter_context(runs.run_lock(out))
    if args.out is not None and os.path.exists(os.path.join(out, CHECKPOINT)):
        raise CLIError(f"{out} already holds a run; continue it with `npvae train --resume "
                       f"{out}` or pass another --out")
    return out


def _build_model(opts, input_dim, cond_dim, rows):
    from npvae.core.model import VAEModel
    from npvae.training.estimator import VAE
    try:
        model = VAE(input_dim=input_dim, latent_dim=opts["latent_dim"], hidden=opts["hidden"],
                    activation=opts["activation"], likelihood=opts["likelihood"],
                    beta=opts["beta"], n_samples=opts["samples"], free_bits=opts["free_bits"],
                    cond_dim=cond_dim, seed=opts["seed"])
        core = VAEModel(**{**model.get_params(), "input_dim": None})  # validates, builds nothing
        core.check_memory(input_dim)  # before the weights are built
        core.check_memory(input_dim, min(opts["batch_size"], rows))
        return model.build(input_dim)
    except (TypeError, ValueError) as exc:
        raise CLIError(" ".join(str(exc).split())) from exc


def _objective(opts):
    """The run's ``k`` (1 for the ELBO), checked before any data is loaded."""
    from npvae.core.objectives import check_objective

    if opts["objective"] == "elbo":
        if opts["k"] not in (None, 1):
            raise CLIError(f"--k {opts['k']} is the sample count of --objective iwae or "
                           "iwae-dreg; the ELBO draws --samples per example instead")
    elif opts["free_bits"]:
        raise CLIError(f"--free-bits holds the ELBO's closed-form KL per dimension; "
                       f"--objective {opts['objective']} has none: drop --free-bits")
    return check_objective(opts["objective"], opts["k"])[1]


def train(args, callbacks=()):
    with contextlib.ExitStack() as stack:  # holds the run folder's lock (rank 0's)
        return _train(args, callbacks, stack)


def _train(args, callbacks, stack):
    from npvae.cli import parallel
    from npvae.training.distributed import RanksDiverged
    from npvae.training.trainer import TrainingDiverged

    _check_out(args.out)
    if args.semi_supervised or args.labels or args.alpha is not None or args.n_val:
        from npvae.cli.semisupervised import train_m2
        if parallel.data_parallel("train") is not None:
            raise CLIError("--semi-supervised does not run data-parallel; start it without "
                           "mpiexec")
        return train_m2(args, callbacks, stack)
    dp = parallel.data_parallel("train")  # None unless started by mpiexec -n P, P > 1
    root = dp is None or dp.is_root
    if not root:  # rank 0 prints and writes for the whole job
        args.quiet = args.no_figures = True
    opts, run_dir, resuming = parallel.from_root(dp, lambda: _train_options(args))
    k = _objective(opts)
    if resuming and root:
        stack.enter_context(runs.run_lock(run_dir))
    quiet, progress = args.quiet, not (args.quiet or args.no_progress)
    source = opts["data"] or opts["dataset"]
    _say(args, f"loading {source} ...")
    data_opts = {**opts, "download_timeout": args.download_timeout}
    ds, x_test = parallel.root_first(dp, lambda: runs.load_data(data_opts, progress=progress))
    classes = runs.class_info(ds) if opts["conditional"] else None
    cond = classes[0] if classes else 0
    y_train = runs.one_hot(ds.y_train, cond) if classes else None
    y_test = runs.one_hot(ds.y_test, cond) if classes else None
    model = _build_model(opts, ds.x_train.shape[1], cond, len(ds.x_train))
    if run_dir is None:
        run_dir = parallel.from_root(dp, lambda: _prepare_run_dir(args, opts, stack))
    ckpt = os.path.join(run_dir, CHECKPOINT)
    config = {"command": "npvae train", "options": opts,
              "model": {**model.config(), "backend": model.backend},
              "dataset": runs.dataset_info(ds, x_test, classes), "versions": runs.versions(),
              "mpi_processes": 1 if dp is None else dp.size,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "result": None}
    if resuming and root:  # config.json is rewritten once the resumed fit accepted the options
        config["created"] = runs.read_run_config(run_dir).get("created", config["created"])
    elif root:
        runs.write_json(os.path.join(run_dir, CONFIG), config)
    _say(args, f"training {model!r}\n  on {len(ds.x_train)} {ds.name} examples "
               f"({len(x_test)} for validation); run folder {run_dir}")
    if dp is not None:
        _say(args, f"  data-parallel on {dp.size} MPI processes: each takes 1/{dp.size} of "
                   f"every batch of {opts['batch_size']}")
    t0 = time.perf_counter()
    status, error, trained = 0, None, []
    callbacks = [*callbacks, lambda m, rec: trained.append(rec["epoch"])]
    try:
        with _plain_warnings():
            model.fit(ds.x_train, y_train, validation_data=(x_test, y_test),
                      epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"],
                      lr_schedule=None if opts["lr_schedule"] == "none" else opts["lr_schedule"],
                      kl_warmup_epochs=opts["kl_warmup"], clip_norm=opts["clip_norm"],
                      early_stopping_patience=opts["early_stopping"], seed=opts["seed"],
                      threads=opts["threads"],
                      binarize="stochastic" if opts["binarize"] == "stochastic" else None,
                      checkpoint_path=ckpt, resume=resuming, progress=progress,
                      callbacks=callbacks, objective=opts["objective"], k=opts["k"], comm=dp)
    except TrainingDiverged as exc:
        status, error = 1, " ".join(str(exc).split())
    except RanksDiverged as exc:  # raised on every rank alike
        if root:
            print(f"npvae train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad settings, or a checkpoint that does not fit them
        raise CLIError(" ".join(str(exc).split())) from exc
    if not root:  # rank 0 writes the metrics, figures and config, and reports
        interrupted = model.stop_reason_ == "interrupted"
        return status or (128 + int(model.stop_signal_ or signal.SIGINT) if interrupted else 0)
    history = getattr(model, "history_", [])
    runs.write_metrics(os.path.join(run_dir, METRICS), history)
    stop = "diverged" if status else model.stop_reason_
    rec, elbo = runs.final_elbo(history, getattr(model, "best_epoch_", None))
    config["result"] = {"stop_reason": stop, "epochs": sum(not r.get("interrupted")
                                                          for r in history),
                        "best_epoch": getattr(model, "best_epoch_", None),
                        "val_elbo": elbo, "val_recon": rec and rec["val_recon"],
                        "val_kl": rec and rec["val_kl"],
                        "seconds": sum(r.get("seconds", 0.0) for r in history)}
    if status:
        runs.write_json(os.path.join(run_dir, CONFIG), config)
        kept = (f"the last good checkpoint {ckpt} is kept" if os.path.exists(ckpt)
                else "no checkpoint had been written yet")
        print(f"npvae train: error: {error}. Try a smaller --lr (now {opts['lr']:g}) or "
              f"--clip-norm 10; {kept}", file=sys.stderr)
        return status
    if stop == "interrupted":
        config["result"]["seconds"] = time.perf_counter() - t0
        runs.write_json(os.path.join(run_dir, CONFIG), config)
        print(f"interrupted: checkpoint saved to {ckpt}\nresume with: npvae train --resume "
              f"{run_dir}", file=sys.stderr)
        return 128 + int(model.stop_signal_ or signal.SIGINT)  # the shell's convention
    if resuming and not trained:
        _say(args, f"nothing to train: the run already did {len(history)} epochs "
                   f"({stop}); pass a larger --epochs to train on")
    figs = []
    if not args.no_figures:
        _say(args, "drawing figures ...")
        try:
            figs = runs.make_figures(
                run_dir, model, history, x_test,
                ds.y_test if ds.y_test is not None and ds.y_test.ndim == 1 else None,
                image_shape=ds.image_shape, classes=classes, label_names=ds.label_names,
                seed=opts["seed"])
        except KeyboardInterrupt as exc:
            runs.write_json(os.path.join(run_dir, CONFIG), config)
            print(f"interrupted while drawing the figures; the checkpoint {ckpt} is complete. "
                  f"Redraw them with: npvae train --resume {run_dir}", file=sys.stderr)
            return 128 + getattr(exc, "signum", signal.SIGINT)
    config["result"]["figures"] = figs
    runs.write_json(os.path.join(run_dir, CONFIG), config)
    if quiet:
        print(run_dir)
        return 0
    files = ", ".join([CHECKPOINT, CONFIG, METRICS, *figs])
    print(f"wrote {run_dir}{os.sep}: {files}")
    if stop == "early_stopping":
        print(f"early stopping after epoch {history[-1]['epoch']}; kept the weights of "
              f"epoch {model.best_epoch_}")
    if elbo is not None:
        print(f"validation ELBO {elbo:.2f} nats (recon {rec['val_recon']:.2f}, KL "
              f"{rec['val_kl']:.2f}) at epoch {rec['epoch']}; took "
              f"{time.perf_counter() - t0:.0f} s")
        if opts["objective"] != "elbo":
            print(f"validation {opts['objective']} bound (k={k}) "
                  f"{-rec['val_loss']:.2f} nats")
    print(f"next: npvae sample {run_dir}   npvae eval {run_dir}")
    return 0


# ----------------------------------------------------------------------------- loading
def _load(args):
    ckpt, run_dir = runs.resolve_checkpoint(args.checkpoint)
    model, ck_config = runs.load_model(ckpt)
    return model, ckpt, runs.read_run_config(run_dir), ck_config


def _shape(model, run_cfg):
    return runs.image_shape_for(model.input_dim, (run_cfg.get("dataset") or {}).get(
        "image_shape"))


def _eval_data(args, model, run_cfg):
    """Test data (and one-hot labels for a conditional model) for reconstruct and eval."""
    given = _explicit(args)
    data_keys = ("dataset", "data", "n_train", "n_test", "binarize", "scale", "cache_dir")
    given = {k: v for k, v in given.items() if k in data_keys}
    saved = run_cfg.get("options") or {}
    if "dataset" in given or "data" in given:
        if "dataset" in given and "data" in given:
            raise CLIError("pass either --dataset or --data FILE, not both")
        opts = {"binarize": saved.get("binarize", "none"), **given}
    elif saved:
        opts = {**{k: saved.get(k) for k in data_keys}, **given}
    else:
        raise CLIError(f"{args.checkpoint} has no {CONFIG} beside it to say which data it was "
                       "trained on; pass --dataset NAME or --data FILE")
    ds, x_test = runs.load_data({**opts, "download_timeout": args.download_timeout})
    if x_test.shape[1] != model.input_dim:
        raise CLIError(f"the model expects {model.input_dim} values per example but "
                       f"{opts.get('data') or opts.get('dataset')} has {x_test.shape[1]}; pass "
                       "the dataset the model was trained on")
    y = None
    if model.cond_dim:
        if ds.y_test is None or ds.y_test.ndim != 1:
            raise CLIError("this conditional model needs class labels with the data; pass a "
                           "dataset with labels")
        if int(ds.y_test.max()) >= model.cond_dim:
            raise CLIError(f"the data has labels up to {int(ds.y_test.max())} but the model "
                           f"knows {model.cond_dim} classes")
        y = runs.one_hot(ds.y_test, model.cond_dim, model.dtype)
    return ds, x_test, y


# ----------------------------------------------------------------------------- sample
def _class_names(model, run_cfg):
    names = (run_cfg.get("dataset") or {}).get("classes")
    return list(names) if names and len(names) == model.cond_dim \
        else [str(i) for i in range(model.cond_dim)]


def sample(args, callbacks=()):
    from npvae import plot

    model, ckpt, run_cfg, _ = _load(args)
    names = _class_names(model, run_cfg)
    n, row_labels, ncols = args.n, None, None
    model.check_sample_memory(n + model.cond_dim, mean=not args.draw)  # before y is built
    if args.label is not None:
        if not model.cond_dim:
            raise CLIError("--label needs a conditional model (trained with --conditional); "
                           f"{ckpt} is not conditional: drop --label")
        lab = args.label.strip()
        k = int(lab) if lab.isdigit() else (names.index(lab) if lab in names else -1)
        if not 0 <= k < model.cond_dim:
            raise CLIError(f"unknown --label {lab!r}; the model's classes are "
                           + ", ".join(f"{i}={s}" for i, s in enumerate(names)))
        y = runs.one_hot(np.full(n, k), model.cond_dim, model.dtype)
    elif model.cond_dim:
        per = math.ceil(n / model.cond_dim)
        n, ncols, row_labels = per * model.cond_dim, per, names
        y = runs.one_hot(np.repeat(np.arange(model.cond_dim), per), model.cond_dim,
                         model.dtype)
    else:
        y = None
    x = model.sample(n, y=y, rng=np.random.default_rng(args.seed), mean=not args.draw)
    shape = _shape(model, run_cfg)
    out = args.out if args.out is not None or args.npy is not None else "samples.png"
    if out is not None:
        if shape is None:
            raise CLIError(f"cannot tell the image shape of {model.input_dim} values per "
                           "example; save the samples with --npy FILE instead")
        plot.image_grid(x, shape, ncols=ncols or min(n, 8 if n <= 64 else 16), clip=True,
                        title="samples", row_labels=row_labels, path=out)
        print(f"wrote {n} samples to {out}")
    if args.npy is not None:
        np.save(args.npy, x.reshape(n, *shape) if shape else x)
        print(f"wrote {n} samples to {args.npy} (shape {(n, *shape) if shape else x.shape})")
    return 0


def reconstruct(args, callbacks=()):
    from npvae import plot

    model, _, run_cfg, _ = _load(args)
    ds, x_test, y = _eval_data(args, model, run_cfg)
    shape = runs.image_shape_for(model.input_dim, ds.image_shape) or _shape(model, run_cfg)
    if shape is None:
        raise CLIError(f"cannot draw examples of {model.input_dim} values as images")
    n = min(args.n, len(x_test))
    recon = model.reconstruct(x_test[:n], None if y is None else y[:n])
    plot.reconstruction_figure(x_test[:n], recon, shape, n=n, clip=True, path=args.out)
    print(f"wrote {n} test images and their reconstructions to {args.out}")
    return 0


def eval(args, callbacks=()):  # noqa: A001 - the command's name
    from npvae.inference import metrics

    model, ckpt, run_cfg, _ = _load(args)
    ds, x_test, y = _eval_data(args, model, run_cfg)
    # by default the noise of training's validation, so the ELBO is the one train printed
    rng = np.random.default_rng(metrics.EVAL_SEED if args.seed is None else args.seed)
    t0 = time.perf_counter()
    recon, kl = metrics.elbo_terms(model, x_test, y, n_samples=model.n_samples, rng=rng)
    ll = model.log_likelihood(x_test, y, k=args.k, rng=rng)
    active, var = metrics.active_units(model, x_test, y)
    kl_dim = metrics.kl_per_dimension(model, x_test, y)
    res = {"checkpoint": ckpt, "dataset": ds.name, "n_test": len(x_test),
           "elbo": float(-(recon + kl).mean()), "recon": float(recon.mean()),
           "kl": float(kl.mean()), "log_likelihood": float(ll.mean()), "k": args.k,
           "active_units": active, "latent_dim": model.latent_dim,
           "posterior_mean_variance": [float(v) for v in var],
           "kl_per_dimension": [float(v) for v in kl_dim],
           "seconds": time.perf_counter() - t0}
    if args.ais:
        res["ais"] = _posterior_inference(args, model, x_test, y, rng)
    if args.json:
        print(json.dumps(res))
        return 0
    noise = "validation's noise" if args.seed is None else f"noise of seed {args.seed}"
    print(f"test set       {ds.name}, {len(x_test)} examples ({ckpt})\n"
          f"ELBO           {res['elbo']:.3f} nats   (recon {res['recon']:.3f}, "
          f"KL {res['kl']:.3f}; {noise})\n"
          f"log p(x)       {res['log_likelihood']:.3f} nats   (IWAE estimate, k={args.k})\n"
          f"active units   {active} of {model.latent_dim}   (Var_x E[z_j|x] > 0.01)\n"
          f"KL per z_j     " + " ".join(f"{v:.2f}" for v in kl_dim))
    a = res.get("ais")
    if a:
        t = a["seconds"]
        print(f"on the first {a['examples']} test examples:\n"
              f"  ELBO(q)        {a['elbo']:.3f} nats   (the encoder; {t['elbo']:.1f} s)\n"
              f"  ELBO(q*)       {a['elbo_qstar']:.3f} nats   (a Gaussian fitted per "
              f"example; {t['qstar']:.1f} s)\n"
              f"  log p(x) AIS   {a['log_px']:.3f} +- {a['stderr']:.3f} nats   "
              f"(T={a['steps']}, {a['chains']} chains, acceptance {a['accept']:.2f}; "
              f"{t['ais']:.1f} s)\n"
              f"  amortisation gap   ELBO(q*) - ELBO(q)  = {a['amortisation_gap']:.3f} nats\n"
              f"  approximation gap  log p(x) - ELBO(q*) = {a['approximation_gap']:.3f} nats")
    return 0


def _posterior_inference(args, model, x, y, rng):
    """AIS log p(x), ELBO(q*) and the two gaps on the first ``--ais-examples`` rows."""
    from npvae.inference.ais import ais
    from npvae.inference.metrics import elbo_terms
    from npvae.inference.qstar import optimise_qstar

    n = len(x) if args.ais_examples == 0 else min(args.ais_examples, len(x))
    x, y = x[:n], None if y is None else y[:n]
    t0 = time.perf_counter()
    elbo = -np.add(*elbo_terms(model, x, y, n_samples=100, rng=rng))
    t1 = time.perf_counter()
    q = optimise_qstar(model, x, y, n_eval=100, rng=rng, progress=True)
    t2 = time.perf_counter()
    a = ais(model, x, y, n_steps=args.ais_steps, chains=args.ais_chains, rng=rng,
            progress=True)
    t3 = time.perf_counter()
    log_px, se = a.mean()
    return {"examples": n, "steps": args.ais_steps, "chains": args.ais_chains,
            "log_px": log_px, "stderr": se, "accept": float(a.accept.mean()),
            "elbo": float(elbo.mean()), "elbo_qstar": float(q.elbo.mean()),
            "amortisation_gap": float((q.elbo - elbo).mean()),
            "approximation_gap": float((a.log_px - q.elbo).mean()),
            "qstar_converged": float(q.converged.mean()),
            "seconds": {"elbo": t1 - t0, "qstar": t2 - t1, "ais": t3 - t2}}


# ----------------------------------------------------------------------------- info
def _status(tr, hist, run_cfg):
    """How the run stands: its stop reason when it finished (early stopping, divergence),
    "completed" only when it trained every epoch it was asked for, else "interrupted"
    (Ctrl-C, SIGTERM, a kill, or a callback, as config.json says)."""
    if not tr:
        return None
    if tr.get("finished"):
        return tr["finished"]
    wanted = (tr.get("settings") or {}).get("epochs")
    if tr.get("step_in_epoch") or (hist and hist[-1].get("interrupted")) \
            or (wanted is not None and tr.get("epoch", 0) < wanted):
        said = (run_cfg.get("result") or {}).get("stop_reason")
        return said if said in ("callback", "interrupted") else "interrupted"
    return "completed"


def _num(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else f"{'-':>{spec.split('.')[0]}}"


def info(args, callbacks=()):
    model, ckpt, run_cfg, ck = _load(args)
    tr = ck.get("training") or {}
    hist = ck.get("history") or []
    done = [r for r in hist if not r.get("interrupted")]
    enc = " -> ".join(str(s) for s in [model.input_dim + model.cond_dim,
                                        *model.encoder_hidden, f"2x{model.latent_dim}"])
    dec = " -> ".join(str(s) for s in [model.latent_dim + model.cond_dim,
                                        *model.decoder_hidden, model.input_dim])
    finished = _status(tr, hist, run_cfg)
    res = {"checkpoint": ckpt, "size_bytes": os.path.getsize(ckpt),
           "parameters": int(model.params.data.size), "model": model.config(),
           "encoder": enc, "decoder": dec, "epochs_trained": len(done), "status": finished,
           "training": tr.get("settings"), "history": hist,
           "dataset": run_cfg.get("dataset"), "options": run_cfg.get("options"),
           "result": run_cfg.get("result"), "versions": run_cfg.get("versions")}
    if args.json:
        print(json.dumps(res, default=str))
        return 0
    c = model.config()
    lines = [f"checkpoint   {ckpt} ({res['size_bytes'] / 1e6:.1f} MB)",
             f"model        VAE, latent dim {c['latent_dim']}, {model.likelihood.name} likelihood, "
             f"{c['activation']}, beta {c['beta']:g}, L={c['n_samples']}, free bits "
             f"{c['free_bits']:g}, {c['dtype']}"
             + (f", conditional on {c['cond_dim']} classes" if c["cond_dim"] else ""),
             f"encoder      {enc}", f"decoder      {dec}",
             f"parameters   {res['parameters']:,}"]
    ds = res["dataset"]
    if ds:
        shape = "x".join(map(str, ds["image_shape"])) if ds.get("image_shape") else \
            f"{ds.get('n_features')} values"
        lines.append(f"dataset      {ds['name']}: {ds.get('n_train')} train / "
                     f"{ds.get('n_test')} test, "
                     f"{shape}")
    s = tr.get("settings")
    if s:
        lines.append(f"training     {len(done)} of {s.get('epochs')} epochs ({finished}), batch "
                     f"{s.get('batch_size')}, {s.get('optimizer')} lr {_num(s.get('lr'), 'g')}, "
                     f"schedule {s.get('lr_schedule') or 'none'}, KL warm-up "
                     f"{_num(s.get('kl_warmup_epochs'), 'g')}, seed {s.get('seed')}"
                     + (f", objective {s.get('objective')} k={s.get('k')}"
                        if s.get("objective", "elbo") != "elbo" else ""))
    if done:
        secs = sum(r.get("seconds", 0.0) for r in hist)
        lines.append(f"history      {'epoch':>5} {'train loss':>11} {'val ELBO':>10} "
                     f"{'val recon':>10} {'val KL':>8}   ({secs:.0f} s in all)")
        pick = done if len(done) <= 8 else done[:3] + done[-4:]
        for j, r in enumerate(pick):
            if len(done) > 8 and j == 3:
                lines.append(f"{'':13}{'...':>5}")
            v, k = r.get("val_recon"), r.get("val_kl")
            val = (f"{-(v + k):10.3f} {v:10.3f} {k:8.3f}" if v is not None and k is not None
                   else f"{'-':>10} {'-':>10} {'-':>8}")
            lines.append(f"{'':13}{r['epoch']:5d} {_num(r.get('train_loss'), '11.3f')} {val}")
    opts = res["options"]
    if opts:
        lines.append("options      " + " ".join(
            f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in opts.items() if v not in (None, False)))
    print("\n".join(lines))
    return 0
