"""Train the reference VAE in npvae and in every installed peer, side by side, in one run.

    python bench/run.py                 # batch 1, 16, 128, 512; 2 threads; ~5 minutes
    python bench/run.py --quick         # shorter windows; about a minute
    python bench/run.py --threads 1 --batch 16 128
    python bench/run.py --load quiet    # without the busy-core rotation: half the time

The reference model is the PyTorch examples VAE: encoder 784-400 (ReLU) -> mu, logvar (20
each), decoder 20-400 (ReLU) -784 Bernoulli logits, one reparameterised sample, Adam lr
1e-3, float32, on fixed random binary data. Every peer is first checked to compute the
same loss on the same weights and noise; then all are timed in alternation (one window of
each per round), warm-up and compilation excluded, and medians with min and max over the
windows are reported. Each library runs in a process of its own (bench/worker.py), so that
no library's thread pool competes with another's. With ``--load both`` (the default) every
case is also timed, in the same rotation, with one busy process pinned to the last core
(bench/load.py): a laptop or shared server with another job running. Writes
bench/results/latest.json and latest.md.
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
# the workers start with these variables as the user set them (see npvae.kernels)
OMP_ENV = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

import numpy as np  # noqa: E402

from bench import roofline  # noqa: E402
from bench.load import BusyCore, loaded  # noqa: E402
from bench.peers import jax_vae, torch_vae  # noqa: E402
from bench.worker import POOL, Worker  # noqa: E402

BUSY = "@busy"  # suffix of a case timed with one busy core


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
                    help="peers to leave out: torch-eager torch-fused torch-compile jax numpy "
                         "npvae-npdot")
    ap.add_argument("--max-foreign", type=float, default=0.3,
                    help="redo a window during which other processes kept more than this "
                         "many cores busy (default 0.3; the machine is shared)")
    ap.add_argument("--load", choices=("both", "quiet", "busy"), default="both",
                    help="time the training steps on a quiet machine, with one busy process "
                         "pinned to the last core, or both in one rotation (default: both)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"),
                    help="folder for latest.json and latest.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.windows, args.window_s = 3, 0.25
        args.skip = list(set(args.skip) | {"torch-compile"})
    return args


# --------------------------------------------------------------------------------- cases
CASES = ("npvae", "npvae-1thread", "npvae-npdot", "numpy-ref", "torch-eager", "torch-fused",
         "torch-compile", "jax-jit")
# npvae-npdot: npvae with its GEMMs through np.dot (NPVAE_GEMM=numpy), run only when the npvae
# case uses its own split GEMM (MKL or OpenBLAS calls), so that the table shows what it buys
CASE_ENV = {"npvae-npdot": {"NPVAE_GEMM": "numpy"}}
# npvae-1thread: npvae on one thread (`--threads 1`), the figure its default must keep up with
# when another process takes a core
CASE_THREADS = {"npvae-1thread": 1}


def make_cases(weights, threads, skip):
    """Start one worker process per case that can run here; a case that cannot is a note."""
    from npvae.kernels import gemm_info

    wanted = [c for c in CASES if c not in skip
              and not (c == "numpy-ref" and "numpy" in skip)
              and not (c == "jax-jit" and "jax" in skip)]
    notes = {}
    if threads < 2 and "npvae-1thread" in wanted:
        wanted.remove("npvae-1thread")  # the same as npvae
    if "npvae-npdot" in wanted and gemm_info("numba")["provider"] == "numpy":
        wanted.remove("npvae-npdot")  # npvae itself runs on NumPy's BLAS
    if not torch_vae.available():
        notes["torch"] = f"not installed ({torch_vae.why_unavailable()})"
        wanted = [c for c in wanted if not c.startswith("torch-")]
    if "jax-jit" in wanted and not jax_vae.available():
        notes["jax"] = f"not installed ({jax_vae.why_unavailable()})"
        wanted.remove("jax-jit")
    workers = {}
    for key in wanted:
        try:
            workers[key] = Worker(key, weights, CASE_THREADS.get(key, threads),
                                  env={**OMP_ENV, **CASE_ENV.get(key, {})})
        except Exception as e:  # a peer that cannot run here is reported, not fatal
            if key == "npvae":
                raise
            notes[key] = f"failed: {e}"
    return workers, notes


def random_weights(seed=0):
    from npvae import VAE

    return {k: v.copy() for k, v in VAE(784, 20, hidden=(400,), seed=seed).named_parameters()
            .items()}


def check_equivalence(workers, rng):
    x = (rng.random((16, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((1, 16, 20)).astype(np.float32)
    ref = workers["npvae"].call("loss", x, noise)
    out = {}
    for name, w in workers.items():
        val = w.call("loss", x, noise)
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
m.loss_and_grad(x); opt.step()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_step_s": t2 - t1}))  # model build + step
"""


def blas_pool_status():
    from npvae.kernels import gemm_info, get_kernels

    pool = get_kernels("numba").blas_pool
    gemm = gemm_info("numba")
    gemm = (f"npvae's GEMMs: {gemm['provider']} {gemm['detail']}" if gemm["why"] is None
            else f"npvae's GEMMs: NumPy's BLAS ({gemm['why']})")
    return gemm + "; " + (
        "NumPy's OpenBLAS runs its jobs on Numba's thread pool" if pool.active else
        "NumPy's OpenBLAS uses its own threads (npvae's BLAS pool is off or unavailable)")


def startup_times():
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = subprocess_seconds(STARTUP, env)
        warm = subprocess_seconds(STARTUP, env)
    return {"import_s": warm.get("import_s"), "cold_first_step_s": cold.get("first_step_s"),
            "warm_first_step_s": warm.get("first_step_s")}


# ---------------------------------------------------------------------------------- timing
def time_batch(workers, n, args, rng, load):
    data = [((rng.random((n, 784)) < 0.5).astype(np.float32),
             rng.standard_normal((1, n, 20)).astype(np.float32)) for _ in range(POOL)]
    for w in workers.values():
        w.call("batch", data)
    kw = dict(n_windows=args.windows, min_window_s=args.window_s, warmup_s=0.3,
              max_foreign=args.max_foreign, pause_s=0.15)
    cases = {}
    if args.load != "busy":
        cases.update({k: w.case("train", n) for k, w in workers.items()})
    if load is not None:  # the same cases with a busy core, in the same rotation
        cases.update({f"{k}{BUSY}": loaded(w.case("train", n), load)
                      for k, w in workers.items()})
    gemm_windows = []
    cases["roofline"] = roofline_case(n, args.threads, gemm_windows)
    train = common.time_interleaved(cases, **kw)
    roof = train.pop("roofline")
    roof["gemm_exact_s"] = gemm_windows
    infer = common.time_interleaved({k: w.case("infer", n) for k, w in workers.items()}, **kw)
    return train, infer, roof


def roofline_case(n, threads, gemm_windows):
    """The roofline as one more case in the training rotation. Each of its windows measures
    the step's GEMMs again (``roofline.measure_gemm_shapes``), so that the bound comes from
    the same minutes as npvae's windows: this VM has fast and slow stretches, and a bound
    measured once, before or after, made the roofline fraction swing with them. Its
    "rate" is ``n / (GEMMs + Adam's bytes / bandwidth)`` samples/s."""
    def window(min_s):
        adam_s = roofline.roofline_step_time(n, threads)["adam_s"]  # bandwidth: cached
        gm = roofline.measure_gemm_shapes(n, threads)
        gemm_windows.append(gm["time_s"])
        return 1, gm["time_s"] + adam_s, gm["foreign_cores"]

    return {"items": n, "warm": lambda calls, secs: None, "window": window}


def table(results, peers):
    others = [p for p in peers if p != "npvae"]
    head = ("| batch | npvae train samples/s (min-max) | "
            + " | ".join(f"vs {p}" for p in others)
            + " | roofline fraction | npvae infer samples/s | infer vs best PyTorch | infer vs "
            "best peer |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        t = r["train"]
        npv = t["npvae"]
        cells = [f"{r['batch']}", f"{npv['median']:,.0f} ({npv['min']:,.0f}-{npv['max']:,.0f})"]
        cells += [f"{npv['median'] / t[p]['median']:.2f}x" for p in others]
        cells.append(f"{r['roofline_fraction']:.0%}")
        inf = r["infer"]
        best = max((inf[p]["median"] for p in others if not p.startswith(("numpy", "npvae"))),
                   default=float("nan"))
        best_torch = max((inf[p]["median"] for p in others if p.startswith("torch")),
                         default=float("nan"))
        npv_inf = inf["npvae"]["median"]
        cells += [f"{npv_inf:,.0f}", f"{npv_inf / best_torch:.2f}x", f"{npv_inf / best:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(bound_table(results, peers))
    lines.append("")
    lines.append("Peers' medians (training samples/s): " + "; ".join(
        f"batch {r['batch']}: " + ", ".join(f"{p} {r['train'][p]['median']:,.0f}"
                                             for p in others) for r in results))
    return "\n".join(lines)


def busy_table(results, peers):
    """Training with one busy process pinned to the last core (bench/load.py), every case
    timed in the same rotation as the quiet windows: npvae's default against its own
    single-thread step and the peers under the same load, and how much of its quiet
    throughput each keeps."""
    others = [p for p in peers if p not in ("npvae", "npvae-1thread")]
    quiet = "npvae" in results[0]["train"]
    lines = ["| batch | npvae busy samples/s (min-max) | vs npvae-1thread, busy | "
             + " | ".join(f"vs {p}, busy" for p in others)
             + (" | kept of quiet: " + ", ".join(["npvae"] + others) if quiet else "") + " |"]
    lines.append("|" + "---|" * (lines[0].count("|") - 1))
    for r in results:
        t = r["train"]
        npv = t["npvae" + BUSY]
        one = t.get("npvae-1thread" + BUSY)
        cells = [f"{r['batch']}", f"{npv['median']:,.0f} ({npv['min']:,.0f}-{npv['max']:,.0f})",
                 f"{npv['median'] / one['median']:.2f}x" if one else "-"]
        cells += [f"{npv['median'] / t[p + BUSY]['median']:.2f}x" for p in others]
        if quiet:
            cells.append(", ".join(f"{t[p + BUSY]['median'] / t[p]['median']:.0%}"
                                   for p in ["npvae"] + others))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Medians under load (training samples/s): " + "; ".join(
        f"batch {r['batch']}: " + ", ".join(f"{p} {r['train'][p + BUSY]['median']:,.0f}"
                                             for p in peers if p != "npvae") for r in results))
    return "\n".join(lines)


def bound_table(results, peers):
    """Where npvae's step time goes, and the ceiling its GEMMs put on its ratios: the
    ratio npvae would reach if its step were nothing but its GEMMs at the roofline's rate
    (the fastest BLAS measured here: see bench/roofline.py)."""
    others = [p for p in peers if p not in ("npvae", "numpy-ref", "npvae-npdot",
                                            "npvae-1thread")]
    lines = ["| batch | npvae step ms | its GEMMs at the roofline's rate, ms (share) | "
             + " | ".join(f"ceiling vs {p}" for p in others) + " |",
             "|" + "---|" * (3 + len(others))]
    for r in results:
        n, t = r["batch"], r["train"]
        step_ms = 1e3 * n / t["npvae"]["median"]
        gemm_ms = 1e3 * r["roofline"]["gemm_exact_s"]
        cells = [f"{n}", f"{step_ms:.2f}", f"{gemm_ms:.2f} ({gemm_ms / step_ms:.0%})"]
        cells += [f"{1e3 * n / t[p]['median'] / gemm_ms:.2f}x" for p in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpus = common.pin_cpus(args.threads)  # the workers inherit the CPU set
    import numba
    from threadpoolctl import threadpool_limits

    from npvae.kernels import get_kernels

    get_kernels("numba")  # starts Numba's pool as npvae does (BLAS jobs on it)

    # this process measures the roofline's GEMMs and bandwidth at the same thread count
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    weights = random_weights()
    workers, notes = make_cases(weights, args.threads, set(args.skip))
    try:
        run(args, cpus, rng, workers, notes)
    finally:
        for w in workers.values():
            w.close()


def time_one_batch(workers, n, args, rng, load):
    """Time batch size ``n`` (training quiet and/or busy, inference quiet) and return its
    record for latest.json."""
    t0 = time.perf_counter()
    train, infer, roof_windows = time_batch(workers, n, args, rng, load)
    roof = roofline.roofline_step_time(n, args.threads)
    gemm_s = float(np.median(roof_windows["gemm_exact_s"]))  # the windows' median
    roof.update(gemm_exact_s=gemm_s, gemm_exact_gflops=roof["gemm_flops"] / gemm_s / 1e9,
                step_time_s=n / roof_windows["median"],
                samples_per_s=roof_windows["median"], windows=roof_windows)
    x = (rng.random((n, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((1, n, 20)).astype(np.float32)
    alloc = workers["npvae"].call("alloc", x, noise)
    main = train.get("npvae", train.get("npvae" + BUSY))
    print(f"batch {n}: npvae {main['median']:,.0f} samples/s, "
          + ", ".join(f"{p} {train[p]['median']:,.0f}" for p in train if p != "npvae")
          + f"; roofline {roof['samples_per_s']:,.0f}; "
          f"allocated {alloc['numpy_bytes_retained_per_step']:.0f} B/step "
          f"({time.perf_counter() - t0:.0f} s)")
    return {"batch": n, "train": train, "infer": infer,
            "roofline": {k: v for k, v in roof.items() if k not in ("gemms", "bandwidth")},
            "roofline_fraction": main["median"] / roof["samples_per_s"],
            "allocations": alloc}


def run(args, cpus, rng, workers, notes):
    print(common.openblas_env_status(REMOVED_ENV))
    print(f"BLAS: {common.numpy_blas_summary()}; CPUs {cpus}; threads {args.threads}; "
          f"one process per case: {', '.join(workers)}")
    print(blas_pool_status())
    for k, v in notes.items():
        print(f"peer {k}: {v}")
    equiv = check_equivalence(workers, rng)
    print("same loss on the same weights and noise: " + ", ".join(
        f"{k} {v['rel_diff']:.1e}" for k, v in equiv.items()))
    print("startup (subprocesses):", startup := startup_times())
    results = []
    load = None
    if args.load != "quiet":
        load = BusyCore(cpus[-1])
        print(f"competing load: one busy process pinned to CPU {cpus[-1]}, resumed only for "
              f"the windows marked {BUSY}")
    try:
        for n in args.batch:
            results.append(time_one_batch(workers, n, args, rng, load))
    finally:
        if load is not None:
            load.close()
    md = "\n\n".join(
        ([table(results, list(workers))] if args.load != "busy" else [])
        + ([f"Under one busy core ({BUSY}):", busy_table(results, list(workers))]
           if args.load != "quiet" else []))
    info = common.machine_info()
    rss = {k: w.call("rss") for k, w in workers.items()}
    header = (f"Machine: {info['cpu_model']}, {len(cpus)} CPUs used, {args.threads} threads; "
              f"BLAS {common.numpy_blas_summary()}; "
              f"{common.openblas_env_status(REMOVED_ENV)}; versions "
              + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
              + ". Each case in its own process. "
              f"{blas_pool_status()}. "
              f"Import {startup['import_s']:.2f} s; after it, model build and first step "
              f"cold (JIT compile) {startup['cold_first_step_s']:.2f} s, warm (disk cache) "
              f"{startup['warm_first_step_s']:.2f} s; peak RSS of the npvae process "
              f"{rss['npvae']:.0f} MB.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(header + "\n\n" + md + "\n")
    (out / "latest.json").write_text(json.dumps(
        {"args": vars(args), "machine": info, "equivalence": equiv, "startup": startup,
         "notes": notes, "worker_notes": {k: w.notes for k, w in workers.items()},
         "results": results, "peak_rss_mb": rss, "openblas_env_removed": REMOVED_ENV},
        indent=1, default=str))
    print()
    print(header)
    print()
    print(md)
    print(f"\nwrote {out / 'latest.md'} and {out / 'latest.json'}")


if __name__ == "__main__":
    main()
