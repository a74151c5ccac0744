"""Where npvae's training step spends its time, at one batch size.

    python bench/step_parts.py [BATCH] [--threads N]

Prints, for the bench's model (784-400-20, Bernoulli, Adam, float32), medians over
repeated steps of:

* the whole ``VAE.train_step``;
* inside it: the GEMMs (the kernels' ``matmul``), Adam, and each other kernel, timed by
  wrapping them (the wrappers add about a microsecond a call);
* the step's GEMMs replayed alone, in order, on the step's own buffers: what they cost
  with operands as a step leaves them, not as a GEMM repeated in a loop leaves them;
* the step with every kernel and GEMM replaced by a no-op: the Python around them.
"""

import argparse
import time
from collections import defaultdict

import numpy as np

from npvae import Adam, VAEModel
from npvae.kernels import gemm_info

KERNELS = ("bias_act", "act_backward", "sample_kl", "sample_kl_backward", "bernoulli_nll",
           "adam_step", "adam_step_outer")


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("batch", type=int, nargs="?", default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)

    model = VAEModel(784, 20, hidden=(400,), seed=0)  # loads the kernels and the BLAS pool
    import numba
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    numba.set_num_threads(args.threads)
    opt = Adam(model.params, lr=1e-3)
    kernels = model.kernels
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((1, args.batch, 20)).astype(np.float32)

    def step():
        model.train_step(x, opt, noise=noise, check_input=False)

    for _ in range(20):
        step()
    whole = median_ms(step, args.reps)

    spent, calls = defaultdict(float), []
    matmul, originals = kernels.matmul, {k: getattr(kernels, k) for k in KERNELS}

    def timed(name, fn):
        def wrapper(*a):
            start = time.perf_counter()
            out = fn(*a)
            spent[name] += time.perf_counter() - start
            return out
        return wrapper

    def record(a, b, out):
        calls.append((a, b, out))
        return matmul(a, b, out)

    kernels.matmul = timed("GEMMs", record)
    for k, fn in originals.items():
        setattr(kernels, k, timed("Adam" if k.startswith("adam") else k, fn))
    for _ in range(args.reps):
        step()
    n_gemms = len(calls) // args.reps
    gemms = calls[:n_gemms]

    def replay():
        for a, b, out in gemms:
            matmul(a, b, out)

    replayed = median_ms(replay, args.reps)
    kernels.matmul = lambda a, b, out: out
    for k in KERNELS:
        setattr(kernels, k, lambda *a: 1.0)
    python_only = median_ms(step, args.reps)
    kernels.matmul = matmul
    for k, fn in originals.items():
        setattr(kernels, k, fn)

    pool = "on Numba's pool" if kernels.blas_pool.active else "on OpenBLAS's own threads"
    gemm = gemm_info(kernels.name)
    gemm = (f"npvae's own {gemm['provider']}, split over Numba's pool" if gemm["why"] is None
            else f"NumPy's BLAS {pool}")
    print(f"batch {args.batch}, {args.threads} threads, GEMMs: {gemm}")
    print(f"{'whole train_step':34s} {whole:7.2f} ms")
    for name, total in sorted(spent.items(), key=lambda kv: -kv[1]):
        label = f"  {name}" + (f" ({n_gemms} calls)" if name == "GEMMs" else "")
        print(f"{label:34s} {total / args.reps * 1e3:7.2f} ms")
    print(f"{'the GEMMs replayed alone, in order':34s} {replayed:7.2f} ms")
    print(f"{'Python only (kernels as no-ops)':34s} {python_only:7.3f} ms")


if __name__ == "__main__":
    main()
