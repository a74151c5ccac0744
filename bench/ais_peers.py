"""AIS log p(x) in npvae against the same algorithm written in PyTorch, one thread each.

    python bench/ais_peers.py                      # both cases, 2 rounds: ~15 minutes
    python bench/ais_peers.py --case ppca --rounds 3
    python bench/ais_peers.py --case ref --ref-steps 200

Cases (float32, prior start, sigmoid schedule, HMC with 10 leapfrog steps, step sizes from
a warm-up pass of ``--warmup`` temperatures (timed apart), K = 16 chains for each of N = 100
points):

* ``ppca``: a 12-D probabilistic-PCA decoder with a 3-D latent (x = z W + b + noise,
  variance 0.5), T = 10,000: the point at which lxuechen/BDMC was measured (38 s, within
  -0.012 +/- 0.015 nats of the exact log p(x)). The exact log p(x) is known here.
* ``ref``: the reference 20-400-784 ReLU decoder with Bernoulli logits (random He weights,
  data simulated from it), T = ``--ref-steps``.

Each library runs in a process of its own (spawned, pinned to one CPU, one thread), and the
runs alternate npvae, torch, npvae, torch, ... so that a slow stretch of a shared machine
hits both. Reported per case: each run's wall time (warm-up pass excluded, reported apart),
the torch / npvae ratio of each round and their median, decoder evaluations per second
(rows through the decoder, forward and backward to z), the GEMM FLOP rate they amount to,
set against the rate of the same GEMMs alone (measured in npvae's process just before each
of its runs), the share of npvae's run those GEMMs take at that rate, the ceiling (torch's
time over npvae's GEMM time: what npvae would reach if nothing but its GEMMs took time),
the rate of the training step's GEMMs (the 784-400-20 VAE's ``train_step`` at batch 128),
and the estimates with their standard errors (and the error against the exact value for
pPCA). Writes ``bench/results/ais.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "ppca": dict(z=3, d=12, hidden=(), likelihood="gaussian", variance=0.5),
    "ref": dict(z=20, d=784, hidden=(400,), likelihood="bernoulli", variance=1.0),
}
N_POINTS, CHAINS, LEAPFROG = 100, 16, 10


def make_case(name, seed=0):
    """Decoder weights (npvae layout), data (N, D) and, for pPCA, the exact log p(x)."""
    import numpy as np

    from npvae.core.model import VAEModel

    c = CASES[name]
    model = VAEModel(c["d"], c["z"], hidden=c["hidden"], likelihood=c["likelihood"],
                     variance=c["variance"], dtype="float32", seed=seed)
    rng = np.random.default_rng(seed)
    if name == "ppca":
        dec = model.decoder.layers[0]
        dec.W[...] = rng.standard_normal(dec.W.shape)
        dec.b[...] = rng.standard_normal(dec.b.shape)
    layers = [(lay.W.copy(), lay.b.copy()) for lay in model.decoder.layers]
    z = rng.standard_normal((N_POINTS, c["z"])).astype(np.float32)
    out = model.decode(z, raw=True)
    x = model.likelihood.sample(out, rng).astype(np.float32)
    exact = None
    if name == "ppca":
        from scipy.stats import multivariate_normal

        w, b = (a.astype(np.float64) for a in layers[0])
        cov = w.T @ w + c["variance"] * np.eye(c["d"])
        exact = multivariate_normal(b, cov).logpdf(x.astype(np.float64))
    return model, layers, x, exact


def gemm_flops_per_row(layers):
    """Multiply-adds x 2 of one row's decoder pass forward and backward to its input."""
    return sum(4 * w.shape[0] * w.shape[1] for w, _ in layers)


def worker(conn, lib, name, warmup):
    """One library's process: build the case, then answer ``run <steps> <seed>``."""
    sys.path.insert(0, str(ROOT))
    from bench import common

    common.set_thread_env(1)
    os.environ["NPVAE_ADAPT_THREADS"] = "0"
    common.pin_cpus(1)
    import numpy as np

    model, layers, x, _ = make_case(name)
    if lib == "npvae":
        import numba

        numba.set_num_threads(1)
        from npvae.inference.ais import ais

        def run(steps, seed):
            r = ais(model, x, n_steps=steps, chains=CHAINS, n_leapfrog=LEAPFROG,
                    warmup=warmup, rng=seed)
            return r.log_px, r.stderr, float(r.accept.mean()), r.seconds, r.warmup_seconds
    else:
        from bench.peers.torch_ais import TorchAIS

        peer = TorchAIS(layers, CASES[name]["likelihood"], x, CHAINS,
                        CASES[name]["variance"], threads=1)

        def run(steps, seed):
            return peer.run(steps, warmup, LEAPFROG, seed=seed)

    run(3, 99)  # compile / warm caches
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        if cmd[0] == "gemm":
            conn.send(train_rate())
            continue
        # npvae: the rate of its decoder GEMMs alone, measured just before its run, so
        # that the GEMM share of the run comes from the same stretch of a shared machine
        gemm = gemm_alone(model, layers, N_POINTS * CHAINS) if lib == "npvae" else None
        cpu = time.process_time()
        est, se, acc, secs, warm = run(cmd[1], cmd[2])
        cpu = time.process_time() - cpu  # this process's CPU time, warm-up included:
        # less sensitive than wall time to other processes taking the core
        conn.send({"log_px": np.asarray(est).tolist(), "stderr": np.asarray(se).tolist(),
                   "accept": acc, "seconds": secs, "warmup_seconds": warm,
                   "cpu_seconds": cpu, "gemm_alone_gflops": gemm})


def gemm_alone(model, layers, rows, seconds=0.5):
    """GFLOP/s of the decoder's GEMMs alone at ``rows`` rows (forward and input-backward,
    through npvae's matmul kernel, on buffers of ones), over about ``seconds``."""
    import numpy as np

    k = model.kernels
    bufs = []
    for w, _ in layers:
        a = np.ones((rows, w.shape[0]), np.float32)
        o = np.ones((rows, w.shape[1]), np.float32)
        bufs.append((a, w, o))

    def gemms():
        for a, w, o in bufs:
            k.matmul(a, w, o)
            k.matmul(o, w.T, a)

    gemms()
    t, reps = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        gemms()
        reps += 1
    return gemm_flops_per_row(layers) * rows * reps / (time.perf_counter() - t) / 1e9


def train_rate(reps=20):
    """GFLOP/s of the training step's GEMMs: the 784-400-20 VAE's train_step at batch 128,
    all its GEMM FLOPs over its whole step time."""
    import numpy as np

    from npvae import VAE, Adam

    vae = VAE(784, 20, hidden=(400,), dtype="float32", seed=0)
    opt = Adam(vae.params, lr=1e-3)
    xb = (np.random.default_rng(0).random((128, 784)) > 0.5).astype(np.float32)
    for _ in range(5):
        vae.train_step(xb, opt)
    t = time.perf_counter()
    for _ in range(reps):
        vae.train_step(xb, opt)
    step = (time.perf_counter() - t) / reps
    # 6 GEMMs per layer pair minus the encoder's input gradient: 3 per layer, 2 for the first
    macs = 128 * (784 * 400 * 2 + 400 * 40 * 3 + 20 * 400 * 3 + 400 * 784 * 3)
    return {"train_step_gflops": 2 * macs / step / 1e9, "train_step_ms": step * 1e3}


def start(lib, name, warmup):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=worker, args=(child, lib, name, warmup), daemon=True)
    p.start()
    if parent.recv() != "ready":
        raise RuntimeError(f"{lib} worker failed")
    return p, parent


def bench_case(name, steps, rounds, warmup):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    _, layers, _, exact = make_case(name)
    procs = {lib: start(lib, name, warmup) for lib in ("npvae", "torch")}
    runs = {"npvae": [], "torch": []}
    for r in range(rounds):
        for lib in ("npvae", "torch") if r % 2 == 0 else ("torch", "npvae"):
            time.sleep(0.5)
            procs[lib][1].send(("run", steps, r))
            res = procs[lib][1].recv()
            runs[lib].append(res)
            m = float(np.mean(res["log_px"]))
            se = float(np.sqrt(np.sum(np.square(res["stderr"]))) / len(res["stderr"]))
            err = "" if exact is None else f", error {m - exact.mean():+.4f} +- {se:.4f}"
            print(f"  {name} round {r}: {lib:6s} {res['seconds']:8.2f} s (warm-up "
                  f"{res['warmup_seconds']:.2f} s), mean log p(x) {m:.4f}{err}, "
                  f"acceptance {res['accept']:.2f}", flush=True)
    procs["npvae"][1].send(("gemm",))
    rates = procs["npvae"][1].recv()
    for p, conn in procs.values():
        conn.send(("stop",))
        p.join(timeout=30)
    pairs = list(zip(runs["npvae"], runs["torch"], strict=True))
    ratios = [t["seconds"] / n["seconds"] for n, t in pairs]
    cpu_ratios = [t["cpu_seconds"] / n["cpu_seconds"] for n, t in pairs]
    evals = N_POINTS * CHAINS * LEAPFROG * (steps - 1)  # rows through the decoder
    flops = evals * gemm_flops_per_row(layers)
    # npvae's run time at its GEMMs-alone rate: the share of the run that is GEMMs, and
    # the ratio torch / (npvae's GEMM time), which no work outside the GEMMs can beat
    gemm_s = [flops / (r["gemm_alone_gflops"] * 1e9) for r in runs["npvae"]]
    out = {"case": name, "steps": steps, "points": N_POINTS, "chains": CHAINS,
           "leapfrog": LEAPFROG, "warmup": warmup, "ratios": ratios,
           "ratio_median": statistics.median(ratios), "cpu_ratios": cpu_ratios,
           "cpu_ratio_median": statistics.median(cpu_ratios),
           "gemm_alone_gflops": [r["gemm_alone_gflops"] for r in runs["npvae"]],
           "gemm_share": [g / r["seconds"] for g, r in zip(gemm_s, runs["npvae"], strict=True)],
           "ceiling": [t["seconds"] / g for g, t in zip(gemm_s, runs["torch"], strict=True)],
           **rates}
    for lib, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        m = [float(np.mean(r["log_px"])) for r in rs]
        se = [float(np.sqrt(np.sum(np.square(r["stderr"]))) / N_POINTS) for r in rs]
        out[lib] = {"seconds": [r["seconds"] for r in rs], "median_seconds": secs,
                    "ms_per_step": secs / (steps - 1) * 1e3,
                    "decoder_rows_per_s": evals / secs,
                    "gemm_gflops": evals * gemm_flops_per_row(layers) / secs / 1e9,
                    "mean_log_px": m, "stderr": se,
                    "error": None if exact is None else [v - float(exact.mean()) for v in m],
                    "accept": [r["accept"] for r in rs]}
    return out


def write(results, path):
    lines = ["# AIS: npvae vs PyTorch (same algorithm, one thread each)", "",
             "Shared 2-core VM: ratios come from one alternating run; absolute times swing.",
             "Command: `python bench/ais_peers.py " + " ".join(sys.argv[1:]) + "`", "",
             "| case | T | library | s (median) | ms / step | decoder rows/s | GEMM GFLOP/s "
             "| mean log p(x) +- se | error vs exact |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for lib in ("npvae", "torch"):
            s = r[lib]
            err = "-" if s["error"] is None else f"{statistics.mean(s['error']):+.4f}"
            lines.append(
                f"| {r['case']} | {r['steps']} | {lib} | {s['median_seconds']:.2f} | "
                f"{s['ms_per_step']:.3f} | {s['decoder_rows_per_s']:.3g} | "
                f"{s['gemm_gflops']:.1f} | {statistics.mean(s['mean_log_px']):.4f} +- "
                f"{statistics.mean(s['stderr']):.4f} | {err} |")
    def per_round(v, fmt):
        return ", ".join(format(x, fmt) for x in v)

    lines += ["", "| case | torch / npvae per round (wall) | median | the same in CPU time, "
              "warm-up included | median | npvae's GEMMs alone, GFLOP/s | GEMM share of "
              "npvae's run | ceiling: torch / npvae's GEMM time | train step GFLOP/s "
              "(784-400-20, batch 128) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {per_round(r['ratios'], '.2f')} | "
                     f"{r['ratio_median']:.2f} | {per_round(r['cpu_ratios'], '.2f')} | "
                     f"{r['cpu_ratio_median']:.2f} | {per_round(r['gemm_alone_gflops'], '.1f')} | "
                     f"{per_round(r['gemm_share'], '.0%')} | {per_round(r['ceiling'], '.1f')} "
                     f"| {r['train_step_gflops']:.1f} |")
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("ppca", "ref", "both"), default="both")
    p.add_argument("--rounds", type=int, default=2, help="runs per library (default 2)")
    p.add_argument("--ppca-steps", type=int, default=10_000)
    p.add_argument("--ref-steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=None, help=(
        "temperatures of the warm-up pass (default: npvae's, max(20, min(200, T // 10)))"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "ais.md"))
    a = p.parse_args(argv)
    results = []
    for name in ("ppca", "ref") if a.case == "both" else (a.case,):
        steps = a.ppca_steps if name == "ppca" else a.ref_steps
        print(f"{name}: T = {steps}, {N_POINTS} points x {CHAINS} chains, {a.rounds} rounds",
              flush=True)
        warmup = a.warmup or max(20, min(200, steps // 10))
        results.append(bench_case(name, steps, a.rounds, warmup))
    write(results, Path(a.out))


if __name__ == "__main__":
    main()
