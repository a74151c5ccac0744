"""The GEMM + memory roofline of one training step of the reference VAE, measured in-process.

A training step of the 784-400-(20+20) / 20-400-784 VAE at batch N (L=1 sample) is, for the
part that can be timed against hardware limits, 11 GEMMs plus one Adam update:

forward (4):      x·W for each Dense layer (rows N; the decoder's rows are L·N)
                    N×784·784×400, N×400·400×40, N×20·20×400, N×400·400×784
weight grads (4): dW = Xᵀ·dY    784×N·N×400, 400×N·N×40, 20×N·N×400, 400×N·N×784
input grads (3):  dX = dY·Wᵀ    N×784·784×400 (dec.out), N×400·400×20 (dec.0: dz),
                                N×40·40×400 (enc.out: dh).  The first layer's input gradient
                                (dx, N×400·400×784) is not needed and not counted.
Adam:             reads p, g, m, v and writes p, m, v: 7 · n_params · itemsize bytes
                  (n_params = 652,824; 18.3 MB in float32; working set 10.4 MB).

``step_flops(N)`` = Σ 2·m·n·k = 2·N·(3·651,200 − 313,600) = 3,280,000·N (L=1).

What is measured (medians of repeats, all in this process, NumPy's BLAS limited to ``threads``
with threadpoolctl):

* GEMM rate on the exact shapes: each of the 11 GEMMs is run with ``np.matmul(a, b, out=c)``,
  with ``np.dot(a, b, out=c)`` and, when npvae uses its own split GEMM (MKL or OpenBLAS
  calls, ``npvae.plumbing.gemm``), with that, on operands in the layouts a hand-written
  backward uses
  (transposed *views* for Xᵀ and Wᵀ, so BLAS gets the transpose flags); per GEMM the fastest
  is kept (np.matmul does not hand inner-dimension-1 products, i.e. batch-1 weight
  gradients, to BLAS).  Time = Σ of the 11 medians; rate = step_flops / that time.
* GEMM rate on a large square GEMM (2048³, ``np.matmul``, and MKL's when used): the
  machine's practical float32 peak; ``step_flops / square_rate`` is the ideal GEMM time.
* Memory bandwidth over a buffer the size of Adam's working set (4 · n_params float32):
  ``np.add(a, b, out=a)`` (read 2, write 1; single-threaded: NumPy ufuncs are), ``np.copyto``
  (read 1, write 1) and, when Numba is available, a parallel Numba loop with exactly Adam's
  traffic (read p, g, m, v; write p, m, v; trivial arithmetic) on ``threads`` threads.
  Bytes counted are the logical ones (no write-allocate).  The best of these is the
  bandwidth used by the roofline.  The buffer fits in this CPU's L3, as Adam's state does.
* For reference, a Numba parallel float32 Adam kernel (PyTorch form, sqrt and divide) on the
  same arrays: the time a fused Adam actually needs.

Run as a script::

    python bench/roofline.py --threads 2 1 --batch 1 16 128 512 [--json out.json]
    python bench/roofline.py --coretype-compare Haswell   # GEMM rates with/without
                                                          # OPENBLAS_CORETYPE, in subprocesses
    (--unset-openblas-env: unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE before importing numpy)
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "--unset-openblas-env" in sys.argv:
    # must happen before numpy is first imported in this process
    for _k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_k, None)

import numpy as np  # noqa: E402

try:
    from . import common  # imported as bench.roofline
except ImportError:  # run as a script, or imported with bench/ on sys.path
    import common  # type: ignore

LAYERS = (  # (name, in, out)
    ("encoder.0", 784, 400),
    ("encoder.out", 400, 40),
    ("decoder.0", 20, 400),
    ("decoder.out", 400, 784),
)
N_PARAMS = sum(i * o + o for _, i, o in LAYERS)  # 652,824


def step_gemms(n: int, n_samples: int = 1) -> list:
    """The GEMMs of one training step at batch ``n`` as dicts (name, kind, m, k, n, flops).

    The product is (m×k)·(k×n).  Decoder layers see ``n_samples * n`` rows.
    """
    out = []
    for name, fin, fout in LAYERS:
        rows = n * n_samples if name.startswith("decoder") else n
        out.append(dict(name=name, kind="fwd X·W", m=rows, k=fin, n=fout))
    for name, fin, fout in LAYERS:
        rows = n * n_samples if name.startswith("decoder") else n
        out.append(dict(name=name, kind="dW = Xᵀ·dY", m=fin, k=rows, n=fout))
    for name, fin, fout in LAYERS:
        if name == "encoder.0":
            continue  # the input gradient of the first layer is not needed
        rows = n * n_samples if name.startswith("decoder") else n
        out.append(dict(name=name, kind="dX = dY·Wᵀ", m=rows, k=fout, n=fin))
    for g in out:
        g["flops"] = 2 * g["m"] * g["k"] * g["n"]
    return out


def step_flops(n: int, n_samples: int = 1) -> int:
    """Σ 2·m·n·k over the GEMMs of one training step (3,280,000·n for one sample)."""
    return sum(g["flops"] for g in step_gemms(n, n_samples))


def adam_bytes(n_params: int = N_PARAMS, itemsize: int = 4) -> int:
    """Bytes one Adam step moves: read p, g, m, v and write p, m, v = 7·n_params·itemsize."""
    return 7 * n_params * itemsize


# ---- measurements ----------------------------------------------------------------------------
def _limits(threads):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def _operands(g, rng):
    """Arrays with the layout a hand-written backward passes to BLAS."""
    f32 = np.float32
    m, k, n = g["m"], g["k"], g["n"]
    if g["kind"].startswith("fwd"):
        a = rng.standard_normal((m, k)).astype(f32)  # activations (rows, in)
        b = rng.standard_normal((k, n)).astype(f32)  # W (in, out)
    elif g["kind"].startswith("dW"):
        a = rng.standard_normal((k, m)).astype(f32).T  # Xᵀ: view of X (rows, in)
        b = rng.standard_normal((k, n)).astype(f32)  # dY (rows, out)
    else:
        a = rng.standard_normal((m, k)).astype(f32)  # dY (rows, out)
        b = rng.standard_normal((n, k)).astype(f32).T  # Wᵀ: view of W (in, out)
    c = np.empty((m, n), f32)
    return a, b, c


def mkl_matmul(threads):
    """npvae's own GEMM (``npvae.plumbing.gemm``: sequential MKL or OpenBLAS calls split
    over ``threads`` of Numba's), if npvae uses one here; else None."""
    from npvae.kernels import gemm_info, get_kernels

    if gemm_info("numba")["provider"] == "numpy":
        return None
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return get_kernels("numba").matmul


def measure_gemm_shapes(n: int, threads: int, n_samples: int = 1, repeats: int = 7,
                        min_time: float = 0.005) -> dict:
    """Median time of each GEMM of the step with np.matmul, np.dot and (if npvae uses it)
    MKL; see the module doc."""
    rng = np.random.default_rng(0)
    rows = []
    mkl = mkl_matmul(threads)
    snap = common.cpu_snapshot()
    with _limits(threads):
        for g in step_gemms(n, n_samples):
            a, b, c = _operands(g, rng)
            t_mm = common.median_time(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), repeats,
                                      min_time)
            t_dot = common.median_time(lambda a=a, b=b, c=c: np.dot(a, b, out=c), repeats,
                                       min_time)
            t_mkl = float("inf") if mkl is None else common.median_time(
                lambda a=a, b=b, c=c: mkl(a, b, c), repeats, min_time)
            best = min(t_mm, t_dot, t_mkl)
            rows.append(dict(g, t_matmul=t_mm, t_dot=t_dot, t_mkl=t_mkl if mkl else None,
                             t_best=best, gflops_best=g["flops"] / best / 1e9))
    total_t = sum(r["t_best"] for r in rows)
    flops = sum(r["flops"] for r in rows)
    return dict(batch=n, threads=threads, gemms=rows, time_s=total_t,
                foreign_cores=common.foreign_cores(snap, common.cpu_snapshot()),
                time_matmul_only_s=sum(r["t_matmul"] for r in rows),
                flops=flops, gflops=flops / total_t / 1e9)


def measure_square(threads: int, size: int = 2048, repeats: int = 5) -> dict:
    """float32 rate (GFLOP/s) on size×size×size: the faster of np.matmul and (if npvae uses
    it) MKL."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    c = np.empty_like(a)
    mkl = mkl_matmul(threads)
    snap = common.cpu_snapshot()
    with _limits(threads):
        np.matmul(a, b, out=c)
        t = common.median_time(lambda: np.matmul(a, b, out=c), repeats, min_time=0.05)
        if mkl is not None:
            mkl(a, b, c)
            t = min(t, common.median_time(lambda: mkl(a, b, c), repeats, min_time=0.05))
    return dict(size=size, threads=threads, time_s=t, gflops=2 * size**3 / t / 1e9,
                foreign_cores=common.foreign_cores(snap, common.cpu_snapshot()))


_NUMBA = {}


def _numba_kernels():
    if "k" in _NUMBA:
        return _NUMBA["k"]
    try:
        import numba
        from numba import njit, prange

        from npvae.kernels import get_kernels

        get_kernels("numba")  # Numba's pool started as npvae starts it (BLAS jobs on it)
    except ImportError:
        _NUMBA["k"] = None
        return None

    @njit(parallel=True, cache=False)
    def rmw_4r3w(p, g, m, v, s):  # exactly Adam's traffic, trivial arithmetic
        for i in prange(p.size):
            gi = g[i]
            m[i] = m[i] + gi
            v[i] = v[i] + s * gi
            p[i] = p[i] - s * gi

    @njit(parallel=True, cache=False, fastmath=False)
    def adam(p, g, m, v, b1, b2, step_size, bc2_sqrt, eps):
        one = np.float32(1.0)
        for i in prange(p.size):
            gi = g[i]
            mi = b1 * m[i] + (one - b1) * gi
            vi = b2 * v[i] + (one - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = p[i] - step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)

    _NUMBA["k"] = (numba, rmw_4r3w, adam)
    return _NUMBA["k"]


def measure_bandwidth(threads: int, n_params: int = N_PARAMS, repeats: int = 9) -> dict:
    """Streaming bandwidth (GB/s) over Adam-sized buffers; see the module docstring."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    half = 2 * n_params  # a and b together = 4·n_params float32, Adam's working set
    a = rng.standard_normal(half).astype(f32)
    b = rng.standard_normal(half).astype(f32) * f32(1e-6)
    out = {"n_params": n_params, "threads": threads, "adam_bytes": adam_bytes(n_params, 4)}
    snap = common.cpu_snapshot()
    t = common.median_time(lambda: np.add(a, b, out=a), repeats, 0.005)
    out["numpy_add_gbs"] = 3 * half * 4 / t / 1e9
    t = common.median_time(lambda: np.copyto(a, b), repeats, 0.005)
    out["numpy_copyto_gbs"] = 2 * half * 4 / t / 1e9
    k = _numba_kernels()
    if k is not None:
        numba, rmw, adam = k
        prev = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            p, g, m, v = (rng.standard_normal(n_params).astype(f32) for _ in range(4))
            v = np.abs(v)
            s = f32(1e-7)
            t = common.median_time(lambda: rmw(p, g, m, v, s), repeats, 0.005)
            out["numba_4r3w_gbs"] = adam_bytes(n_params, 4) / t / 1e9
            args = (f32(0.9), f32(0.999), f32(1e-3), f32(0.5), f32(1e-8))
            t = common.median_time(lambda: adam(p, g, m, v, *args), repeats, 0.005)
            out["numba_adam_s"] = t
            out["numba_adam_gbs"] = adam_bytes(n_params, 4) / t / 1e9
            out["numba_threading_layer"] = numba.threading_layer()
        finally:
            numba.set_num_threads(prev)
    out["foreign_cores"] = common.foreign_cores(snap, common.cpu_snapshot())
    keys = [k_ for k_ in ("numpy_add_gbs", "numpy_copyto_gbs", "numba_4r3w_gbs") if k_ in out]
    out["best_gbs"] = max(out[k_] for k_ in keys)
    out["best_source"] = max(keys, key=lambda k_: out[k_])
    return out


_CACHE = {}


def roofline_step_time(n: int, threads: int, n_samples: int = 1, refresh: bool = False) -> dict:
    """Lower bound on one training step's time at batch ``n`` on ``threads`` threads.

    step_time_s = Σ(median time of each of the step's 11 GEMMs on its exact shape, best of
                   np.matmul/np.dot, BLAS limited to ``threads``)       -> "gemm_exact_s"
                + adam_bytes(652,824, 4) / best measured bandwidth     -> "adam_s"
    Also: step_time_square_s = step_flops / (2048³ np.matmul rate) + adam_s, the bound if
    the step's GEMMs ran at the large-GEMM rate.  Bandwidth = best of np.add (read 2 write 1),
    np.copyto and a Numba parallel read-4-write-3 loop over Adam-sized arrays (logical bytes).
    Everything is a median of repeats, measured in this process (cached per threads / batch;
    ``refresh=True`` re-measures).  ``foreign_cores``: the most cores other processes kept
    busy during any of these measurements (> ~0.1: the numbers are contaminated; OpenBLAS
    with 2 threads on 2 shared cores degrades by 10x and more).  The elementwise work of the
    step (bias, ReLU, the loss, reparameterisation) is not in the bound.
    """
    key_s, key_b, key_g = ("sq", threads), ("bw", threads), ("g", n, threads, n_samples)
    if refresh or key_s not in _CACHE:
        _CACHE[key_s] = measure_square(threads)
    if refresh or key_b not in _CACHE:
        _CACHE[key_b] = measure_bandwidth(threads)
    if refresh or key_g not in _CACHE:
        _CACHE[key_g] = measure_gemm_shapes(n, threads, n_samples)
    sq, bw, gm = _CACHE[key_s], _CACHE[key_b], _CACHE[key_g]
    flops = step_flops(n, n_samples)
    ab = adam_bytes(N_PARAMS, 4)
    adam_s = ab / (bw["best_gbs"] * 1e9)
    step = gm["time_s"] + adam_s
    step_sq = flops / (sq["gflops"] * 1e9) + adam_s
    return dict(
        batch=n, threads=threads, n_samples=n_samples,
        gemm_flops=flops, gemm_exact_s=gm["time_s"], gemm_exact_gflops=gm["gflops"],
        gemm_square_gflops=sq["gflops"], gemm_at_square_rate_s=flops / (sq["gflops"] * 1e9),
        adam_bytes=ab, bandwidth_gbs=bw["best_gbs"], bandwidth_source=bw["best_source"],
        adam_s=adam_s, numba_adam_s=bw.get("numba_adam_s"),
        step_time_s=step, step_time_square_s=step_sq,
        samples_per_s=n / step, samples_per_s_square=n / step_sq,
        foreign_cores=max(sq["foreign_cores"], bw["foreign_cores"], gm["foreign_cores"]),
        bandwidth=bw, gemms=gm["gemms"],
    )


# ---- script ------------------------------------------------------------------------------------
def _coretype_compare(values, threads_list, batches):
    """Run the GEMM measurements in subprocesses with OPENBLAS_CORETYPE set / unset."""
    import json
    import subprocess

    results = {}
    for val in [None] + list(values):
        env = dict(os.environ)
        for k_ in common.OPENBLAS_VARS:
            env.pop(k_, None)
        if val is not None:
            env["OPENBLAS_CORETYPE"] = val
        cmd = [sys.executable, os.path.abspath(__file__), "--gemm-only", "--json", "-",
               "--threads", *map(str, threads_list), "--batch", *map(str, batches)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            results[val or "unset"] = {"error": r.stderr[-2000:]}
            continue
        results[val or "unset"] = json.loads(r.stdout)
    return results


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description="GEMM + Adam-bandwidth roofline of a VAE step")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 128, 512])
    ap.add_argument("--json", help="write results as JSON to this path ('-' = stdout only)")
    ap.add_argument("--gemm-only", action="store_true", help="only the GEMM rates")
    ap.add_argument("--unset-openblas-env", action="store_true",
                    help="unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE before importing numpy")
    ap.add_argument("--coretype-compare", nargs="*", metavar="CORETYPE",
                    help="compare GEMM rates with these OPENBLAS_CORETYPE values vs unset")
    args = ap.parse_args(argv)
    quiet = args.json == "-"

    if args.coretype_compare is not None:
        res = _coretype_compare(args.coretype_compare or ["Haswell"], args.threads, args.batch)
        print(f"{'OPENBLAS_CORETYPE':<18}{'kernel':<12}{'thr':>4}{'sq GF/s':>9}  "
              + "  ".join(f"N={b:<4}GF/s" for b in args.batch))
        for val, r in res.items():
            if "error" in r:
                print(f"{val:<18} ERROR {r['error'][-300:]}")
                continue
            for t in args.threads:
                row = r["results"][str(t)]
                print(f"{val:<18}{r['kernel']:<12}{t:>4}{row['square']['gflops']:>9.1f}  "
                      + "  ".join(f"{row['shapes'][str(b)]['gflops']:>10.1f}"
                                  for b in args.batch))
        if args.json and args.json != "-":
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return 0

    blas = common.blas_info()
    kernel = next((d.get("architecture") for d in blas if d.get("user_api") == "blas"), None)
    out = {"openblas_env": {k_: os.environ.get(k_) for k_ in common.OPENBLAS_VARS},
           "blas": blas, "kernel": kernel, "results": {}}
    if not quiet:
        print(common.openblas_env_status())
        print("numpy BLAS:", common.numpy_blas_summary())
    for t in args.threads:
        res = {"square": measure_square(t), "shapes": {}}
        for b in args.batch:
            res["shapes"][str(b)] = {k_: v for k_, v in measure_gemm_shapes(b, t).items()}
        if not args.gemm_only:
            res["bandwidth"] = measure_bandwidth(t)
            res["roofline"] = {str(b): {k_: v for k_, v in roofline_step_time(b, t).items()
                                        if k_ not in ("gemms", "bandwidth")}
                               for b in args.batch}
        out["results"][str(t)] = res
        if quiet:
            continue
        print(f"\nthreads={t}: 2048^3 np.matmul {res['square']['gflops']:.1f} GFLOP/s "
              f"(other processes used {res['square']['foreign_cores']:.2f} cores)")
        if not args.gemm_only:
            bw = res["bandwidth"]
            print("  bandwidth GB/s: " + ", ".join(
                f"{k_[:-4]}={bw[k_]:.1f}" for k_ in ("numpy_add_gbs", "numpy_copyto_gbs",
                                                    "numba_4r3w_gbs", "numba_adam_gbs")
                if k_ in bw) + f"; numba Adam kernel {bw.get('numba_adam_s', 0) * 1e3:.3f} ms")
        print(f"  {'N':>5}{'MFLOP':>9}{'exact GF/s':>11}{'gemm ms':>9}"
              + ("" if args.gemm_only else f"{'adam ms':>9}{'step ms':>9}{'roof smp/s':>12}"
                 f"{'sq-rate smp/s':>14}"))
        for b in args.batch:
            s = res["shapes"][str(b)]
            line = f"  {b:>5}{s['flops'] / 1e6:>9.1f}{s['gflops']:>11.1f}{s['time_s'] * 1e3:>9.3f}"
            if not args.gemm_only:
                r = res["roofline"][str(b)]
                line += (f"{r['adam_s'] * 1e3:>9.3f}{r['step_time_s'] * 1e3:>9.3f}"
                         f"{r['samples_per_s']:>12.0f}{r['samples_per_s_square']:>14.0f}")
            print(line)
    if args.json:
        txt = json.dumps(out, indent=1, default=str)
        if args.json == "-":
            print(txt)
        else:
            with open(args.json, "w") as f:
                f.write(txt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
