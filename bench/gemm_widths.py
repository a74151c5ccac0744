"""How wide should the blocks of npvae's split GEMM be? A scan over block widths.

    python bench/gemm_widths.py                  # 1-64 rows, the model's shapes
    python bench/gemm_widths.py --rows 8 16 --widths 32 64 128

npvae cuts a product of more than ``SERIAL_MAX`` multiply-adds into blocks of output
columns, one sequential BLAS call per block on Numba's pool (``npvae.plumbing.gemm``).
By default there is one block per thread of the pool; for the few-row products in
``gemm.NARROW`` the blocks have a fixed width instead, because OpenBLAS's sequential
kernels ran those shapes much faster a few columns at a time. This script times, for each
row count, the model's large GEMM shapes (``B`` in C order and as a transposed view, as
the backward pass passes ``W.T``) split the default way (``pool``) and in blocks of each
width, on 2 threads, and prints microseconds per product (the best of 7 windows): the
table to re-tune ``NARROW`` from on another CPU or BLAS. It unsets
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` for its own process, as ``bench/run.py`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402  (imports no numpy)

REMOVED = common.unset_openblas_env()  # before numpy loads OpenBLAS

import numpy as np  # noqa: E402

SHAPES = [(784, 400), (400, 784)]  # (inner, cols) of the model's 784-400 layers


def best_us(fn, reps):
    for _ in range(max(10, reps // 10)):
        fn()
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best * 1e6


def scan(gemm, fn, a, b, out, parts, widths, reps):
    """Microseconds for ``out = a @ b`` in ``parts`` even blocks, in blocks of each width,
    and as ``gemm.matmul`` chooses."""
    cells = [best_us(lambda: gemm._gemm(fn, a, b, out, parts), reps)]
    cells += [best_us(lambda w=w: gemm._gemm(fn, a, b, out, parts, w), reps) for w in widths]
    return cells + [best_us(lambda: gemm.matmul(a, b, out), reps)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 24, 32, 48, 64],
                    help="row counts (batch sizes) to scan")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 96, 128, 208],
                    help="block widths in columns (multiples of 16 keep blocks aligned)")
    ap.add_argument("--threads", type=int, default=2, help="Numba threads (default 2)")
    args = ap.parse_args(argv)

    import numba

    from npvae.plumbing import gemm

    found = gemm.provider()[0]
    if found is None:
        sys.exit(f"npvae's split GEMM is not in use here ({gemm.info()['why']}); nothing "
                 "to tune")
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    fn, parts = found.gemm[np.dtype(np.float32)], gemm._pool_size()
    print(f"# {found.name} {found.version}; {numba.get_num_threads()} threads, pool "
          f"{parts}; {common.openblas_env_status(REMOVED)}; us per product, best of 7")
    print("| rows | inner x cols | B | pool | " + " | ".join(f"w{w}" for w in args.widths)
          + " | now |")
    print("|---" * (5 + len(args.widths)) + "|")
    rng = np.random.default_rng(0)
    for m in args.rows:
        for k, n in SHAPES:
            a = rng.standard_normal((m, k)).astype(np.float32)
            for layout in ("C", "T"):
                b = rng.standard_normal((k, n)).astype(np.float32)
                if layout == "T":
                    b = np.ascontiguousarray(b.T).T
                out = np.empty((m, n), np.float32)
                cells = scan(gemm, fn, a, b, out, parts, args.widths, max(100, 4000 // m))
                print(f"| {m} | {k}x{n} | {layout} | " + " | ".join(f"{c:.1f}" for c in cells)
                      + " |", flush=True)


if __name__ == "__main__":
    main()
