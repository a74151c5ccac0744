"""The commands of :mod:`npvae.cli`. Each takes the parsed arguments and returns an exit
status, raising :class:`npvae.cli.runs.CLIError` for user errors."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from npvae.cli import runs
from npvae.cli.common import _explicit
from npvae.cli.runs import CONFIG, CLIError
from npvae.cli.training import train  # noqa: F401 (the train command, in its own module)

__all__ = ["train", "sample", "reconstruct", "eval", "info"]


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
