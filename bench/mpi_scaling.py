"""Data-parallel scaling on one machine: P processes of 1 thread against 1 process of P threads.

    pip install -e ".[mpi,bench]"
    python bench/mpi_scaling.py                      # batch 64 256 1024, 3 rounds: ~2 minutes
    python bench/mpi_scaling.py --batch 128 --rounds 5 --procs 2

The reference model (784-400-20, Bernoulli, Adam, float32) on random binary data. Cases, each
a fresh launch, alternated round by round so that a busy stretch of a shared machine hits
them alike:

* ``1p x 1t``: one process, one thread, ``VAEModel.train_step`` (what fit runs without MPI);
* ``Pp x 1t``: ``mpiexec -n P``, one thread each, ``DataParallel.train_step`` (what
  ``fit(comm=...)`` runs: the global batch's noise, the shard's step, the weighted in-place
  ``Allreduce`` of the 2.6 MB gradient and the loss parts beside it, the checksum every 100
  steps);
* ``1p x Pt``: one process with P threads (Numba's pool, MKL GEMMs on it when installed).

Per global batch: samples/s (median of the windows, all ranks timed between barriers). The
P-process case also times the parts a model of scaling needs: one ``Allreduce`` of the
gradient alone, and the step of the shard without the reduction; and it probes overlap
(an ``Iallreduce`` of the decoder's gradient started before a GEMM as large as the encoder's
weight gradient, then waited) against doing the two one after the other. Writes
bench/results/mpi_scaling.{json,md} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402  (standard library only at import)

WINDOW_S = 0.6  # seconds per timed window
WINDOWS = 3  # windows per batch size per launch


# ------------------------------------------------------------------------------- worker
class _Run:
    """The attributes of a Trainer that DataParallel.train_step reads."""

    def __init__(self, model, opt, rng):
        self.model, self.opt, self.rng_noise = model, opt, rng
        self.step, self.stop_training, self._signal = 0, False, None


def _median_time(fn, reps, comm=None):
    times = []
    for _ in range(reps):
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(args):
    """Time one case for every batch size; print one JSON line (on rank 0)."""
    import numpy as np

    from npvae import VAE, Adam
    from npvae.training.trainer import thread_limits

    comm = None
    if args.mpi:
        from mpi4py import MPI

        from npvae.training.distributed import DataParallel
        comm = MPI.COMM_WORLD
        dp = DataParallel(comm)
    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    model = VAE(784, 20, hidden=(400,), seed=0)
    opt = Adam(model.params, lr=1e-3)
    run = _Run(model, opt, np.random.default_rng(0))
    out = {"case": args.case, "batches": {}}
    with thread_limits(args.threads):
        for batch in args.batch:
            x = (np.random.default_rng(batch).random((batch, 784)) < 0.5).astype(np.float32)
            if comm is None:
                def step(x=x):
                    model.train_step(x, opt, rng=run.rng_noise, check_input=False)
            else:
                xb = x[dp.shard(batch)]

                def step(xb=xb, batch=batch):
                    dp.train_step(run, xb, None, batch, check_input=False)
                    run.step += 1
            for _ in range(5):  # warm-up: workspaces, first calls
                step()
            # steps per window from a calibration on rank 0, so every rank runs as many
            t = time.perf_counter()
            for _ in range(5):
                step()
            k = max(3, int(WINDOW_S / max((time.perf_counter() - t) / 5, 1e-6)))
            k = k if comm is None else comm.bcast(k, root=0)
            rates = []
            for _ in range(WINDOWS):
                if comm is not None:
                    comm.Barrier()
                t = time.perf_counter()
                for _ in range(k):
                    step()
                if comm is not None:
                    comm.Barrier()
                rates.append(k * batch / (time.perf_counter() - t))
            rec = {"samples_per_s": rates}
            if comm is not None:
                rec.update(_parts(xb, comm))
            out["batches"][str(batch)] = rec
    if comm is not None:
        out["allreduce_s"] = _allreduce_time(model, comm)
        out["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
        out["overlap"] = _overlap_probe(model, comm, max(args.batch) // size)
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _parts(xb, comm):
    """Per-rank step time of the shard without any reduction (gradient and Adam), on a
    model of its own: stepping the data-parallel one alone would make the ranks drift."""
    import numpy as np

    from npvae import VAE, Adam

    model = VAE(784, 20, hidden=(400,), seed=0)
    opt = Adam(model.params, lr=1e-3)
    noise = np.zeros((1, len(xb), 20), np.float32)
    t = _median_time(lambda: model.train_step(xb, opt, noise=noise, check_input=False,
                                              reduce=lambda loss, parts: (loss, parts)), 30)
    return {"local_step_s": t}


def _allreduce_time(model, comm):
    from mpi4py import MPI

    g = model.params.grad
    for _ in range(5):
        comm.Allreduce(MPI.IN_PLACE, g)
    return _median_time(lambda: comm.Allreduce(MPI.IN_PLACE, g), 200, comm)


def _overlap_probe(model, comm, rows):
    """Would overlapping the decoder's reduction with the encoder's backward pay here?
    Times a GEMM the size of the encoder's weight gradient (784 x rows x 400) and the
    decoder block's Allreduce, one after the other and overlapped (Iallreduce, GEMM, Wait)."""
    import numpy as np
    from mpi4py import MPI

    g = model.params.grad
    dec = model.params.block_slices()
    lo = min(s.start for n, s in dec.items() if n.startswith("decoder."))
    hi = max(s.stop for n, s in dec.items() if n.startswith("decoder."))
    block = g[lo:hi]
    rng = np.random.default_rng(0)
    a, b = rng.random((rows, 784), np.float32), rng.random((rows, 400), np.float32)
    out = np.empty((784, 400), np.float32)

    def gemm():
        np.dot(a.T, b, out=out)

    def serial():
        gemm()
        comm.Allreduce(MPI.IN_PLACE, block)

    def overlapped():
        req = comm.Iallreduce(MPI.IN_PLACE, block)
        gemm()
        req.Wait()

    res = {"rows": rows, "block_bytes": int(block.nbytes)}
    for name, fn in (("gemm_s", gemm), ("serial_s", serial), ("overlapped_s", overlapped)):
        fn()
        res[name] = _median_time(fn, 100, comm)
    res["block_allreduce_s"] = _median_time(lambda: comm.Allreduce(MPI.IN_PLACE, block), 100,
                                            comm)
    return res


# -------------------------------------------------------------------------- coordinator
def _launch(case, procs, threads, batches):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = str(threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--case", case,
           "--threads", str(threads), "--batch", *map(str, batches)]
    if procs > 1:
        cmd = [_mpiexec(), "-n", str(procs), *cmd, "--mpi"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{case} failed (exit {done.returncode}):\n{done.stdout}\n"
                         f"{done.stderr}")
    return json.loads(lines[-1][7:])


def _mpiexec():
    exe = Path(sys.executable).with_name("mpiexec")
    if exe.exists():
        return str(exe)
    import shutil
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("mpiexec not found: pip install -e '.[mpi]' (mpi4py and mpich)")
    return found


def _snapshot():
    """common.cpu_snapshot with the finished workers' CPU counted as this process's own."""
    busy, _, wall = common.cpu_snapshot()
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system, wall


def coordinator(args):
    p = args.procs
    cases = [("1p x 1t", 1, 1), (f"{p}p x 1t", p, 1), (f"1p x {p}t", 1, p)]
    results = {c[0]: [] for c in cases}
    load = []
    print(f"{len(cases)} cases x {args.rounds} rounds, batches {args.batch} ...", flush=True)
    for r in range(args.rounds):
        order = cases if r % 2 == 0 else cases[::-1]
        for name, procs, threads in order:
            a = _snapshot()
            results[name].append(_launch(name, procs, threads, args.batch))
            load.append(common.foreign_cores(a, _snapshot()))
            print(f"  round {r + 1}: {name} done", flush=True)
    summary = _summarise(results, cases, args)
    summary["foreign_cores"] = {"median": statistics.median(load), "max": max(load)}
    summary["machine"] = common.machine_info()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "mpi_scaling.json").write_text(json.dumps({"summary": summary, "raw": results},
                                                     indent=1))
    text = _table(summary, cases, args)
    (out / "mpi_scaling.md").write_text(text)
    print(text)


def _summarise(results, cases, args):
    s = {"batches": {}, "procs": args.procs}
    pname = cases[1][0]
    for b in map(str, args.batch):
        row = {}
        for name, *_ in cases:
            rates = [v for rec in results[name] for v in rec["batches"][b]["samples_per_s"]]
            row[name] = {"median": statistics.median(rates), "min": min(rates),
                         "max": max(rates)}
        row["local_step_s"] = statistics.median(
            rec["batches"][b]["local_step_s"] for rec in results[pname])
        s["batches"][b] = row
    s["allreduce_s"] = statistics.median(rec["allreduce_s"] for rec in results[pname])
    s["mpi"] = " ".join(results[pname][0]["mpi"].split())
    ov = [rec["overlap"] for rec in results[pname]]
    s["overlap"] = {k: statistics.median(o[k] for o in ov) for k in ov[0]}
    return s


def _table(s, cases, args):
    n1, np_, nt = (c[0] for c in cases)
    p = args.procs
    mach = s.get("machine", {})
    lines = [f"# Data-parallel scaling, P = {p} (bench/mpi_scaling.py)", "",
             f"Machine: {mach.get('cpu_model', '?')}, {mach.get('logical_cpus', '?')} CPUs; "
             f"{s.get('mpi', '?')}", "",
             f"samples/s, median of {WINDOWS} windows x {args.rounds} rounds (min-max); "
             f"other processes kept {s['foreign_cores']['median']:.2f} cores busy "
             f"(median, max {s['foreign_cores']['max']:.2f})", "",
             f"| global batch | {n1} | {np_} | {nt} | {np_} / {n1} | {np_} / {nt} "
             f"| shard step, no reduce (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for b, row in s["batches"].items():
        cell = [f"{row[c]['median']:,.0f} ({row[c]['min']:,.0f}-{row[c]['max']:,.0f})"
                for c in (n1, np_, nt)]
        lines.append(f"| {b} | {' | '.join(cell)} | {row[np_]['median'] / row[n1]['median']:.2f}"
                     f" | {row[np_]['median'] / row[nt]['median']:.2f}"
                     f" | {1e3 * row['local_step_s']:.2f} |")
    ov = s["overlap"]
    lines += ["", f"Allreduce of the whole gradient (2.61 MB, in place, {p} ranks): "
              f"{1e3 * s['allreduce_s']:.3f} ms median",
              f"Overlap probe ({ov['rows']:.0f} rows per rank): decoder block "
              f"({ov['block_bytes'] / 1e6:.2f} MB) Allreduce {1e3 * ov['block_allreduce_s']:.3f} "
              f"ms, encoder-sized GEMM {1e3 * ov['gemm_s']:.3f} ms; one after the other "
              f"{1e3 * ov['serial_s']:.3f} ms, overlapped {1e3 * ov['overlapped_s']:.3f} ms", ""]
    return "\n".join(lines + _model_table(s) + [""])


GRAD_BYTES = 652_824 * 4  # the reference model's float32 gradient
# networks of the model: (name, bytes/s at line rate, latency per message)
NETWORKS = (("10 GbE", 1.25e9, 20e-6), ("25 GbE", 3.125e9, 10e-6),
            ("100 Gb/s InfiniBand", 12.5e9, 2e-6))


def step_model(s):
    """Least-squares ``t(b) = c0 + c1 b`` through the 1p x 1t medians: ``c0`` is what a
    step costs whatever its rows (Adam over all the parameters, Python, small kernels),
    which every rank pays in full; ``c1`` is the cost of a row."""
    import numpy as np

    b = np.array([int(k) for k in s["batches"]], float)
    t = np.array([int(k) / r["1p x 1t"]["median"] for k, r in s["batches"].items()])
    c1, c0 = np.polyfit(b, t, 1)
    return max(c0, 0.0), c1


def predicted(s, batch, procs, net):
    """Samples/s of ``procs`` one-core ranks over network ``net`` at global batch ``batch``:
    each rank computes batch / P rows, pays the whole per-step cost, and a ring Allreduce
    moves 2 (P - 1) / P of the gradient through its link in 2 (P - 1) messages."""
    c0, c1 = step_model(s)
    _, bw, lat = net
    comm = 0.0 if procs == 1 else (2 * (procs - 1) / procs * GRAD_BYTES / bw
                                   + 2 * (procs - 1) * lat)
    return batch / (c0 + c1 * batch / procs + comm)


def _model_table(s):
    c0, c1 = step_model(s)
    lines = [f"Model of scaling across machines, one core per rank: step = {1e3 * c0:.2f} ms "
             f"(per step, on every rank: Adam, Python) + {1e6 * c1:.1f} us per row (both "
             "fitted to the 1p x 1t medians) + ring Allreduce 2 (P-1)/P x "
             f"{GRAD_BYTES / 1e6:.2f} MB / bandwidth + 2 (P-1) x latency. Predicted "
             "samples/s:", "",
             "| network | global batch | P=1 | P=2 | P=4 | P=8 | P=16 | P=64 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for net in NETWORKS:
        for batch in (256, 1024, 4096):
            cells = [f"{predicted(s, batch, p, net):,.0f}" for p in (1, 2, 4, 8, 16, 64)]
            lines.append(f"| {net[0]} | {batch} | {' | '.join(cells)} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024],
                    help="global batch sizes (default: 64 256 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    ap.add_argument("--procs", type=int, default=2, help="P (default: 2)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    (worker if args.worker else coordinator)(args)


if __name__ == "__main__":
    main()
