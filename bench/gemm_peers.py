"""The GEMMs of the reference VAE through NumPy's BLAS, PyTorch and npvae, side by side.

    python bench/gemm_peers.py                 # 2 threads, 3 rounds
    python bench/gemm_peers.py --threads 1 --rounds 5

npvae does its matrix products with one single-threaded BLAS call per block on Numba's
pool (``npvae.plumbing.gemm``): Intel MKL on Intel CPUs when the ``mkl`` wheel is
installed, else the OpenBLAS NumPy bundles; PyTorch's CPU build has its own
GEMM (MKL / oneDNN). Where a training step is mostly GEMM time, the ratio of the GEMMs
bounds the ratio of the libraries' steps, whatever the rest of the code does. This script
times the step's largest GEMM shapes at a few batch sizes, each way in its own subprocess
(so that their thread pools never meet), alternating them for ``--rounds`` rounds, and
prints the medians. The npvae column is there when npvae uses its own split GEMM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# (rows, inner, cols) of x @ W for the 784-400-20 VAE; the step's other large GEMMs
# (x^T dY, dY W^T) have the same sizes with the roles exchanged.
SHAPES = [(n, 784, 400) for n in (1, 16, 128, 512)] + [(n, 400, 784) for n in (16, 512)]

CHILD = r"""
import json, sys, time
import numpy as np
lib, threads, shapes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if lib == "torch":
    import torch
    torch.set_num_threads(threads)
elif lib == "npvae":
    import numba
    from npvae.kernels import get_kernels
    matmul = get_kernels("numba").matmul
    numba.set_num_threads(threads)
else:
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
out = {}
rng = np.random.default_rng(0)
for m, k, n in shapes:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    if lib == "torch":
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        f = lambda: torch.mm(ta, tb, out=tc)
    elif lib == "npvae":
        f = lambda: matmul(a, b, c)
    else:
        f = lambda: np.dot(a, b, out=c)
    for _ in range(5):
        f()
    ts = []
    for _ in range(50):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    out[f"{m}x{k}x{n}"] = ts[len(ts) // 2]
print(json.dumps(out))
"""


def run_child(lib, threads):
    res = subprocess.run([sys.executable, "-c", CHILD, lib, str(threads), json.dumps(SHAPES)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"{lib} failed:\n{res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    from npvae.kernels import gemm_info

    times = {"numpy": [], "torch": []}
    if gemm_info("numba")["provider"] != "numpy":
        times["npvae"] = []
    for _ in range(args.rounds):
        for lib in times:
            times[lib].append(run_child(lib, args.threads))
    print(f"{args.threads} threads, medians over {args.rounds} rounds of 50 calls each")
    mkl = "npvae" in times
    print("| GEMM (rows x inner x cols) | np.dot ms | torch.mm ms | np.dot / torch.mm |"
          + (" npvae ms | npvae / torch.mm |" if mkl else ""))
    print("|---|---|---|---|" + ("---|---|" if mkl else ""))
    for key in times["numpy"][0]:
        t = {lib: statistics.median(r[key] for r in rows) * 1e3 for lib, rows in times.items()}
        line = f"| {key} | {t['numpy']:.3f} | {t['torch']:.3f} | {t['numpy'] / t['torch']:.2f} |"
        if mkl:
            line += f" {t['npvae']:.3f} | {t['npvae'] / t['torch']:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
