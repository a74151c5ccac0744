"""``npvae train`` with its defaults, on a quiet machine and with one busy core, alternating.

    python bench/train_busy.py                 # 2 runs of each, about 3 minutes
    python bench/train_busy.py --runs 3 --threads-1

Each run is a fresh ``npvae train --no-progress --quiet --out <tmp>`` in a subprocess (data
generation, training, validation and figures included: what a user waits for); the busy
runs have one process spinning on the last CPU (bench/load.py) for their whole length.
Prints the wall times and the ratio busy / quiet of the medians (the target: at most 1.3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import common  # noqa: E402
from bench.load import BusyCore  # noqa: E402

REMOVED_ENV = common.unset_openblas_env()


def one_run(extra):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "npvae", "train", "--no-progress", "--quiet",
               "--out", str(Path(tmp) / "run"), *extra]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
        return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2, help="runs of each case (default 2)")
    ap.add_argument("--threads-1", action="store_true",
                    help="also time `npvae train --threads 1` in both conditions")
    args = ap.parse_args(argv)
    print(common.openblas_env_status(REMOVED_ENV))
    cpus = sorted(os.sched_getaffinity(0))
    one_run(["--epochs", "1", "--n-train", "512"])  # compiles the kernels into the cache
    cases = {"default": []}
    if args.threads_1:
        cases["--threads 1"] = ["--threads", "1"]
    times = {(c, load): [] for c in cases for load in ("quiet", "busy")}
    with BusyCore(cpus[-1]) as load:
        for r in range(args.runs):
            for c, extra in cases.items():
                times[(c, "quiet")].append(one_run(extra))
                with load.on():
                    times[(c, "busy")].append(one_run(extra))
                print(f"round {r + 1}: {c}: quiet {times[(c, 'quiet')][-1]:.1f} s, busy "
                      f"{times[(c, 'busy')][-1]:.1f} s", flush=True)
    print("\n| case | quiet s (runs) | busy s (runs) | busy / quiet |\n|---|---|---|---|")
    for c in cases:
        q, b = times[(c, "quiet")], times[(c, "busy")]
        print(f"| npvae train {c} | {statistics.median(q):.1f} ({', '.join(f'{v:.1f}' for v in q)})"
              f" | {statistics.median(b):.1f} ({', '.join(f'{v:.1f}' for v in b)}) | "
              f"{statistics.median(b) / statistics.median(q):.2f} |")


if __name__ == "__main__":
    main()
