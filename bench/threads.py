"""npvae training throughput at one batch size for given BLAS and Numba thread counts.

    python bench/threads.py 128 1 1      # batch, BLAS threads, Numba threads
    python bench/threads.py 128 2 2

Run the two one after the other to see how the thread setting behaves on this machine
right now (on a shared 2-core VM, 2 OpenBLAS threads collapse when another process holds
a core). Median, min and max of five 0.5 s windows.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from npvae import Adam, VAEModel  # noqa: E402


def main(argv):
    n, blas, nb = (int(a) for a in argv[:3])
    model = VAEModel(784, 20, hidden=(400,), seed=0)  # first: npvae starts Numba's pool its way
    threadpool_limits(blas)
    numba.set_num_threads(nb)
    opt = Adam(model.params, lr=1e-3)
    rng = np.random.default_rng(0)
    x = (rng.random((n, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((1, n, 20)).astype(np.float32)
    for _ in range(5):
        model.train_step(x, opt, noise=noise, check_input=False)
    rates = []
    for _ in range(5):
        k, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.5:
            model.train_step(x, opt, noise=noise, check_input=False)
            k += 1
        rates.append(k * n / (time.perf_counter() - t))
    print(f"batch {n}, BLAS threads {blas}, Numba threads {nb}: median {np.median(rates):,.0f} "
          f"samples/s (min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main(sys.argv[1:])
