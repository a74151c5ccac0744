"""Train the reference VAE in npvae and in every installed peer, side by side, in one run.

    python bench/run.py                 # batch 1, 16, 128, 512; 2 threads; ~5 minutes
    python bench/run.py --quick         # shorter windows; about a minute
    python bench/run.py --threads 1 --batch 16 128

The reference model is the PyTorch examples VAE: encoder 784-400 (ReLU) -> mu, logvar (20
each), decoder 20-400 (ReLU) -784 Bernoulli logits, one reparameterised sample, Adam lr
1e-3, float32, on fixed random binary data. Every peer is first checked to compute the
same loss on the same weights and noise; then all are timed in alternation (one window of
each per round), warm-up and compilation excluded, and medians with min and max over the
windows are reported. Writes bench/results/latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import common  # noqa: E402  (standard library only at import)

REMOVED_ENV = common.unset_openblas_env()  # before numpy loads OpenBLAS: see the output

import numpy as np  # noqa: E402

from bench import roofline  # noqa: E402
from bench.peers import jax_vae, torch_vae  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 128, 512],
                    help="batch sizes to time (default: 1 16 128 512)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for BLAS, Numba, PyTorch and XLA (default: 2)")
    ap.add_argument("--windows", type=int, default=5, help="timed windows per case (default 5)")
    ap.add_argument("--window-s", type=float, default=0.6,
                    help="minimum seconds per window (default 0.6)")
    ap.add_argument("--quick", action="store_true",
                    help="3 windows of 0.25 s, no torch.compile: about a minute")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="peers to leave out: torch-eager torch-fused torch-compile jax numpy")
    ap.add_argument("--max-foreign", type=float, default=0.3,
                    help="redo a window during which other processes kept more than this "
                         "many cores busy (default 0.3; the machine is shared)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"),
                    help="folder for latest.json and latest.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.windows, args.window_s = 3, 0.25
        args.skip = list(set(args.skip) | {"torch-compile"})
    return args


# ---------------------------------------------------------------------------- npvae side
class NpvaePeer:
    """npvae behind the peers' interface (see bench/peers/__init__.py)."""

    def __init__(self, weights, backend, lr=1e-3):
        from npvae import VAE, Adam

        self.name, self.variant = "npvae", backend
        self.model = VAE(784, 20, hidden=(400,), backend=backend, dtype="float32")
        self.opt = Adam(self.model.params, lr=lr, backend=backend)
        self.reset(weights)

    def reset(self, weights):
        self.model.params.load(weights)
        self.opt = type(self.opt)(self.model.params, lr=self.opt.lr, backend=self.variant)

    def prep(self, x, noise=None):
        return x if noise is None else (x, noise)

    def loss(self, x, noise):
        return self.model.loss_and_grad(x, noise=noise)[0]

    def train_step(self, x, noise):
        self.model.train_step(x, self.opt, noise=noise, check_input=False)

    def infer(self, x):
        return self.model.reconstruct_mean(x)

    def sync(self):
        pass


def make_cases(weights, threads, skip):
    peers = {"npvae": NpvaePeer(weights, "numba")}
    if "numpy" not in skip:
        peers["numpy-ref"] = NpvaePeer(weights, "numpy")
    notes = {}
    if torch_vae.available():
        for variant, key in (("eager", "torch-eager"), ("eager_fused", "torch-fused"),
                             ("compile", "torch-compile")):
            if key in skip or variant not in torch_vae.VARIANTS:
                continue
            try:
                peers[key] = torch_vae.make(weights, threads=threads, variant=variant)
            except Exception as e:  # a peer that cannot run here is reported, not fatal
                notes[key] = f"failed: {type(e).__name__}: {e}"
    else:
        notes["torch"] = f"not installed ({torch_vae.why_unavailable()})"
    if "jax" not in skip:
        if jax_vae.available():
            try:
                peers["jax-jit"] = jax_vae.make(weights, threads=threads)
            except Exception as e:
                notes["jax-jit"] = f"failed: {type(e).__name__}: {e}"
        else:
            notes["jax"] = f"not installed ({jax_vae.why_unavailable()})"
    return peers, notes


def random_weights(seed=0):
    from npvae import VAE

    return {k: v.copy() for k, v in VAE(784, 20, hidden=(400,), seed=seed).named_parameters()
            .items()}


def check_equivalence(peers, weights, rng):
    x = (rng.random((16, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((1, 16, 20)).astype(np.float32)
    ref = peers["npvae"].loss(x, noise)
    out = {}
    for name, p in peers.items():
        p.reset(weights)
        xt, nt = p.prep(x, noise)
        val = float(p.loss(xt, nt))
        out[name] = {"loss": val, "rel_diff": abs(val - ref) / abs(ref)}
        if out[name]["rel_diff"] > 1e-4:
            raise SystemExit(f"{name} computes loss {val} but npvae {ref}: not the same model")
    return out


# --------------------------------------------------------------------- one-off measurements
def subprocess_seconds(code, env=None):
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


STARTUP = """
import json, time
t0 = time.perf_counter()
import npvae
t1 = time.perf_counter()
import numpy as np
m = npvae.VAE(784, 20, hidden=(400,))
opt = npvae.Adam(m.params)
x = (np.random.default_rng(0).random((16, 784)) < 0.5).astype(np.float32)
t2 = time.perf_counter()
m.loss_and_grad(x); opt.step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_step_s": t3 - t2}))
"""


def startup_times():
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = subprocess_seconds(STARTUP, env)
        warm = subprocess_seconds(STARTUP, env)
    return {"import_s": warm.get("import_s"), "cold_first_step_s": cold.get("first_step_s"),
            "warm_first_step_s": warm.get("first_step_s")}


def step_allocations(peer, x, noise, steps=20):
    """Bytes that NumPy allocates per steady-state training step (tracemalloc's NumPy
    domain), and Python objects' net growth, averaged over ``steps`` steps."""
    import tracemalloc

    for _ in range(3):
        peer.train_step(x, noise)
    domain = np.lib.tracemalloc_domain
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    for _ in range(steps):
        peer.train_step(x, noise)
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    numpy_filter = [tracemalloc.DomainFilter(True, domain)]
    diff = snap1.filter_traces(numpy_filter).compare_to(snap0.filter_traces(numpy_filter),
                                                        "filename")
    grown = sum(d.size_diff for d in diff if d.size_diff > 0)
    blocks = sum(d.count_diff for d in diff if d.count_diff > 0)
    return {"numpy_bytes_retained_per_step": grown / steps,
            "numpy_blocks_retained_per_step": blocks / steps}


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- timing
POOL = 8  # distinct batches cycled through, so no peer memorises a single batch


def cycler(p, batches):
    """A training step on the next batch of the pool."""
    state = {"i": 0}

    def step():
        xt, nt = batches[state["i"] % len(batches)]
        state["i"] += 1
        p.train_step(xt, nt)

    return step


def time_batch(peers, weights, n, args, rng):
    data = [((rng.random((n, 784)) < 0.5).astype(np.float32),
             rng.standard_normal((1, n, 20)).astype(np.float32)) for _ in range(POOL)]
    train, infer = {}, {}
    for name, p in peers.items():
        p.reset(weights)
        batches = [p.prep(x, noise) for x, noise in data]
        train[name] = {"fn": cycler(p, batches), "items": n, "sync": p.sync,
                       "setup": (lambda p=p: p.reset(weights))}  # each window from the start
        xt = batches[0][0]
        infer[name] = {"fn": (lambda p=p, xt=xt: p.infer(xt)), "items": n, "sync": p.sync}
    kw = dict(n_windows=args.windows, min_window_s=args.window_s, warmup_s=0.3,
              max_foreign=args.max_foreign)
    return common.time_interleaved(train, **kw), common.time_interleaved(infer, **kw)


def table(results, peers):
    others = [p for p in peers if p != "npvae"]
    head = ("| batch | npvae train samples/s (min-max) | "
            + " | ".join(f"vs {p}" for p in others)
            + " | roofline fraction | npvae infer samples/s | infer vs best peer |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        t = r["train"]
        npv = t["npvae"]
        cells = [f"{r['batch']}", f"{npv['median']:,.0f} ({npv['min']:,.0f}-{npv['max']:,.0f})"]
        cells += [f"{npv['median'] / t[p]['median']:.2f}x" for p in others]
        cells.append(f"{r['roofline_fraction']:.0%}")
        inf = r["infer"]
        best = max((inf[p]["median"] for p in others if not p.startswith("numpy")),
                   default=float("nan"))
        cells += [f"{inf['npvae']['median']:,.0f}", f"{inf['npvae']['median'] / best:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Peers' medians (training samples/s): " + "; ".join(
        f"batch {r['batch']}: " + ", ".join(f"{p} {r['train'][p]['median']:,.0f}"
                                             for p in others) for r in results))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpus = common.pin_cpus(args.threads)
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    weights = random_weights()
    peers, notes = make_cases(weights, args.threads, set(args.skip))
    print(common.openblas_env_status(REMOVED_ENV))
    print(f"BLAS: {common.numpy_blas_summary()}; CPUs {cpus}; threads {args.threads}")
    for k, v in notes.items():
        print(f"peer {k}: {v}")
    equiv = check_equivalence(peers, weights, rng)
    print("same loss on the same weights and noise: " + ", ".join(
        f"{k} {v['rel_diff']:.1e}" for k, v in equiv.items()))
    print("startup (subprocesses):", startup := startup_times())
    results = []
    for n in args.batch:
        t0 = time.perf_counter()
        train, infer = time_batch(peers, weights, n, args, rng)
        roof = roofline.roofline_step_time(n, args.threads)
        x = (rng.random((n, 784)) < 0.5).astype(np.float32)
        noise = rng.standard_normal((1, n, 20)).astype(np.float32)
        alloc = step_allocations(peers["npvae"], x, noise)
        results.append({
            "batch": n, "train": train, "infer": infer,
            "roofline": {k: v for k, v in roof.items() if k not in ("gemms", "bandwidth")},
            "roofline_fraction": train["npvae"]["median"] / roof["samples_per_s"],
            "allocations": alloc,
        })
        print(f"batch {n}: npvae {train['npvae']['median']:,.0f} samples/s, "
              + ", ".join(f"{p} {train[p]['median']:,.0f}" for p in train if p != "npvae")
              + f"; roofline {roof['samples_per_s']:,.0f}; "
              f"allocated {alloc['numpy_bytes_retained_per_step']:.0f} B/step "
              f"({time.perf_counter() - t0:.0f} s)")
    md = table(results, list(peers))
    info = common.machine_info()
    header = (f"Machine: {info['cpu_model']}, {len(cpus)} CPUs used, {args.threads} threads; "
              f"BLAS {common.numpy_blas_summary()}; "
              f"{common.openblas_env_status(REMOVED_ENV)}; versions "
              + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
              + f". Import {startup['import_s']:.2f} s, first step cold (JIT compile) "
              f"{startup['cold_first_step_s']:.2f} s, warm (disk cache) "
              f"{startup['warm_first_step_s']:.2f} s; peak RSS {peak_rss_mb():.0f} MB.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(header + "\n\n" + md + "\n")
    (out / "latest.json").write_text(json.dumps(
        {"args": vars(args), "machine": info, "equivalence": equiv, "startup": startup,
         "notes": notes, "results": results, "peak_rss_mb": peak_rss_mb(),
         "openblas_env_removed": REMOVED_ENV}, indent=1, default=str))
    print()
    print(header)
    print()
    print(md)
    print(f"\nwrote {out / 'latest.md'} and {out / 'latest.json'}")


if __name__ == "__main__":
    main()
