"""Step by step: what the thread governor does when a busy process appears.

    python bench/busy_steps.py                 # batch 512, 3 rounds
    python bench/busy_steps.py --batch 1 --rounds 6

In one process, ``VAEModel.train_step`` (what ``fit`` runs) on the reference model, in
0.6 s windows: quiet, then with one busy process pinned to the last CPU (``bench/load.py``,
resumed only for its windows), then busy again with Numba's count capped at 1 by the user.
Pauses of 1.5 s between windows, as between a case's windows in ``bench/run.py``. For each
window it prints the steps per second (whole window, its first 50 ms, 50-150 ms, the
rest), when the governor first ran a step on one thread, and the longest step: the cost
of the steps run on two threads before the governor saw the load. Run it also with
``NUMBA_NUM_THREADS=1`` for a pool of one thread. Unsets
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


def window(model, opt, x, secs):
    """``(start, seconds, threads after)`` of every step in ``secs`` seconds."""
    import numba

    log, end = [], time.perf_counter() + secs
    while (t0 := time.perf_counter()) < end:
        model.train_step(x, opt, check_input=False)
        log.append((t0, time.perf_counter() - t0, numba.get_num_threads()))
    return log


def summary(name, log, secs):
    t0 = log[0][0]

    def rate(lo, hi):
        return sum(lo <= t - t0 < hi for t, _, _ in log) / (hi - lo)

    first = next((t - t0 for t, _, n in log if n == 1), None)
    when = "never" if first is None else f"{first * 1e3:.1f} ms"
    return (f"{name:>9}: {len(log) / secs:7.0f} steps/s (0-50 ms {rate(0, .05):.0f}, 50-150 "
            f"{rate(.05, .15):.0f}, rest {rate(.15, secs):.0f}); one thread from {when}; "
            f"longest step {max(d for _, d, _ in log) * 1e3:.1f} ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=512, help="rows per step (default 512)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of three windows")
    ap.add_argument("--window-s", type=float, default=0.6, help="seconds per window")
    args = ap.parse_args(argv)

    import numba

    from bench.load import BusyCore
    from npvae import VAE, Adam

    model = VAE(784, 20, hidden=(400,), backend="numba", dtype="float32")
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, 784)) < 0.3).astype(np.float32)
    model.fit(x, epochs=1, progress=False)
    opt = Adam(model.params, lr=1e-3)
    threads = numba.config.NUMBA_NUM_THREADS  # the default cap, set again after each window
    numba.set_num_threads(threads)
    cpu = max(os.sched_getaffinity(0))
    print(f"# batch {args.batch}, {threads} threads (pool {numba.config.NUMBA_NUM_THREADS}), "
          f"busy process on CPU {cpu}; {common.openblas_env_status(REMOVED)}")
    with BusyCore(cpu) as load:
        for r in range(args.rounds):
            quiet = window(model, opt, x, args.window_s)
            time.sleep(1.5)
            with load.on():
                busy = window(model, opt, x, args.window_s)
            time.sleep(1.5)
            numba.set_num_threads(1)
            with load.on():
                capped = window(model, opt, x, args.window_s)
            numba.set_num_threads(threads)
            time.sleep(1.5)
            for name, log in (("quiet", quiet), ("busy", busy), ("busy, 1", capped)):
                print(f"round {r} " + summary(name, log, args.window_s), flush=True)


if __name__ == "__main__":
    main()
