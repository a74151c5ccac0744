"""Timing and environment helpers for the npvae benchmarks.

Import order matters for two of them; a harness should start like this::

    import os, sys
    sys.path.insert(0, REPO_ROOT)
    from bench import common               # imports no numpy / framework at module level
    removed = common.unset_openblas_env()  # BEFORE numpy is first imported (say so in output)
    common.pin_cpus(threads)               # BEFORE numpy/torch/jax create their thread pools
    import numpy as np                     # only now

This module imports only the standard library at import time; numpy, threadpoolctl and psutil
are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import time

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_BLAS_LOADERS = ("numpy", "scipy", "numba", "torch", "jax", "sklearn")


def unset_openblas_env() -> dict:
    """Remove OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from os.environ; return what was removed.

    OpenBLAS reads them once, when the library loads (at the first ``import numpy``, or scipy,
    ...).  Called later they have no effect on this process; the returned dict then has the
    key ``"_too_late"`` naming the already-imported modules.  Unset both together: some
    environments pin an older kernel with OPENBLAS_CORETYPE because older OpenBLAS builds
    computed wrong results on some CPUs; a current numpy is slower with it.
    """
    removed = {k: os.environ.pop(k) for k in OPENBLAS_VARS if k in os.environ}
    late = [m for m in _BLAS_LOADERS if m in sys.modules]
    if late:
        removed["_too_late"] = late
    return removed


def openblas_env_status(removed: dict | None = None) -> str:
    """One line for the harness output saying what was done with the OpenBLAS variables."""
    if removed is None:
        cur = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
        return f"OpenBLAS env: {cur or 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE not set'}"
    late = removed.get("_too_late")
    gone = {k: v for k, v in removed.items() if k != "_too_late"}
    msg = (f"OpenBLAS env: unset {gone} before numpy was imported" if gone
           else "OpenBLAS env: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE were not set")
    if late:
        msg += f" -- WARNING: too late, already imported: {late}; the kernel is unchanged"
    return msg


def pin_cpus(n: int | None) -> list:
    """Restrict this process to its first ``n`` allowed CPUs (``os.sched_setaffinity``).

    Affects the calling thread and every thread it creates afterwards, so call it before numpy,
    numba, torch or jax start their thread pools.  It is the only thing that limits XLA's
    (JAX's) CPU threads; for the others it is harmless.  Returns the allowed CPUs.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if n is not None and 0 < n < len(cpus):
        os.sched_setaffinity(0, set(cpus[:n]))
    return sorted(os.sched_getaffinity(0))


def set_thread_env(n: int) -> None:
    """Set OMP/MKL/OPENBLAS/NUMBA thread variables (effective only before those libraries load)."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = str(n)


# ---- timing ----------------------------------------------------------------------------------
def _summary(rates):
    return {
        "per_window": rates,
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
    }


# ---- CPU used by other processes (shared machines) -----------------------------------------
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot():
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process, wall time)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        busy = (sum(vals) - vals[3] - vals[4]) / _HZ  # all but idle and iowait
    except OSError:
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system, time.perf_counter()


def foreign_cores(before, after) -> float:
    """Average number of cores that OTHER processes kept busy between two cpu_snapshot()s.

    Resolution is one clock tick (10 ms) per core, so it is meaningful over >= ~0.3 s.
    """
    wall = after[2] - before[2]
    if wall <= 0:
        return float("nan")
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)


def foreign_load(seconds=0.5) -> float:
    """Cores used by other processes over the next ``seconds`` (this process sleeps)."""
    a = cpu_snapshot()
    time.sleep(seconds)
    return foreign_cores(a, cpu_snapshot())


def wait_for_quiet(max_foreign=0.15, sample_s=0.5, timeout_s=60.0) -> float:
    """Sleep until other processes use < ``max_foreign`` cores (or timeout); returns the last
    reading.  On a shared 2-core machine a concurrent test run ruins 2-thread timings."""
    t_end = time.perf_counter() + timeout_s
    while True:
        load = foreign_load(sample_s)
        if load < max_foreign or time.perf_counter() >= t_end:
            return load


def _one_window(fn, min_window_s, sync):
    calls = 0
    snap = cpu_snapshot()
    t0 = snap[2]
    deadline = t0 + min_window_s
    while True:
        fn()
        calls += 1
        if time.perf_counter() >= deadline:
            break
    if sync is not None:
        sync()
    end = cpu_snapshot()
    return calls, end[2] - t0, foreign_cores(snap, end)


def time_windows(fn, n_windows=5, min_window_s=0.5, items_per_call=1, warmup_s=0.3,
                 warmup_calls=3, sync=None, max_foreign=None, max_redo=10, setup=None) -> dict:
    """Throughput of ``fn()`` over ``n_windows`` windows of at least ``min_window_s`` each.

    Warm-up (excluded): ``warmup_calls`` calls, then calls until ``warmup_s`` has passed.
    Each window calls ``fn`` until ``min_window_s`` has passed, then ``sync()`` (if given: for
    asynchronous frameworks, e.g. ``peer.sync``), and counts ``calls * items_per_call /
    elapsed``.  Returns ``{"per_window": [items/s...], "median", "min", "max", "calls":
    [...], "window_s": [...], "foreign_cores": [...], "redone": k, "sec_per_call_median"}``;
    ``foreign_cores[i]`` is how many cores other processes kept busy during window i (see
    :func:`foreign_cores`).  With ``max_foreign`` set, a window during which other processes
    used more than that many cores is thrown away, the machine is waited on to go quiet
    (:func:`wait_for_quiet`, up to 30 s) and the window is redone, at most ``max_redo`` times
    in all (``redone`` counts them; windows kept after that may be contaminated: check
    ``foreign_cores``).
    """
    r = time_interleaved({"_": {"fn": fn, "items": items_per_call, "sync": sync,
                                "setup": setup}},
                         n_windows=n_windows, min_window_s=min_window_s, warmup_s=warmup_s,
                         warmup_calls=warmup_calls, pause_s=0.0, max_foreign=max_foreign,
                         max_redo=max_redo)
    return r["_"]


def time_interleaved(cases: dict, n_windows=5, min_window_s=0.5, warmup_s=0.3, warmup_calls=3,
                     pause_s=0.05, max_foreign=None, max_redo=20) -> dict:
    """Time several cases in alternation: round r runs one window of every case.

    ``cases`` maps a name to a dict ``{"fn": callable, "items": items_per_call, "sync":
    callable or None, "setup": callable or None}``; ``setup()`` runs, untimed, before each
    window (e.g. ``peer.reset(weights)`` so that every window starts from the same weights).
    A case timed elsewhere (another process: ``bench/worker.py``) gives instead
    ``{"items": ..., "warm": warm(calls, seconds), "window": window(min_s) -> (calls,
    seconds, foreign_cores)}``.
    All cases are warmed up first (``warmup_calls`` calls, then
    ``warmup_s`` seconds each); each round runs the cases in a rotated order (so no case
    always follows the same one), with ``pause_s`` of sleep before each window so that one
    library's spinning worker threads (OpenMP, OpenBLAS) go idle before the next one starts.
    ``max_foreign``/``max_redo``: as in :func:`time_windows` (redo budget shared by all
    cases); a case with a ``"load"`` entry (cores of competing load it brings itself: see
    ``bench/load.py``) is allowed that many more foreign cores.  Returns ``{name: summary}``
    with the keys :func:`time_windows` documents.
    """
    names = list(cases)
    for name in names:
        c = cases[name]
        if "warm" in c:
            c["warm"](warmup_calls, warmup_s)
            continue
        if c.get("setup") is not None:
            c["setup"]()
        for _ in range(warmup_calls):
            c["fn"]()
        if warmup_s > 0:
            _one_window(c["fn"], warmup_s, c.get("sync"))
        elif c.get("sync") is not None:
            c["sync"]()
    res = {n: {"rates": [], "calls": [], "secs": [], "foreign": [], "redone": 0} for n in names}
    redo_left = max_redo
    for r in range(n_windows):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            c = cases[name]
            while True:
                if c.get("setup") is not None:
                    c["setup"]()
                if pause_s:
                    time.sleep(pause_s)
                if "window" in c:
                    k, dt, fc = c["window"](min_window_s)
                else:
                    k, dt, fc = _one_window(c["fn"], min_window_s, c.get("sync"))
                if (max_foreign is None or fc <= max_foreign + c.get("load", 0.0)
                        or redo_left <= 0):
                    break
                redo_left -= 1
                res[name]["redone"] += 1
                wait_for_quiet(max_foreign, timeout_s=30.0)
            d = res[name]
            d["rates"].append(k * c.get("items", 1) / dt)
            d["calls"].append(k)
            d["secs"].append(dt)
            d["foreign"].append(fc)
    out = {}
    for n in names:
        d = res[n]
        s = _summary(d["rates"])
        s.update(calls=d["calls"], window_s=d["secs"], foreign_cores=d["foreign"],
                 redone=d["redone"],
                 sec_per_call_median=statistics.median(
                     a / b for a, b in zip(d["secs"], d["calls"], strict=True)))
        out[n] = s
    return out


def median_time(fn, repeats=7, min_time=0.005, number=None):
    """Median over ``repeats`` of the per-call time of ``fn``; each repeat runs ``number``
    calls (calibrated so that one repeat lasts at least ``min_time`` when not given)."""
    fn()
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
            number *= 2 if dt <= 0 else max(2, int(1.5 * min_time / dt))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        ts.append((time.perf_counter() - t0) / number)
    return statistics.median(ts)


# ---- environment -----------------------------------------------------------------------------
def blas_info() -> list:
    """BLAS/OpenMP libraries loaded in this process, from threadpoolctl.

    One dict per library: ``user_api`` (blas/openmp), ``internal_api`` (openblas, mkl, blis,
    ...), ``version``, ``architecture`` (the OpenBLAS kernel in use, e.g. SkylakeX or Haswell),
    ``threading_layer``, ``num_threads``, ``filepath``.  Only libraries already loaded are seen,
    so call it after importing numpy (and torch, ...).
    """
    try:
        import threadpoolctl
    except ImportError as e:
        return [{"error": f"threadpoolctl unavailable: {e}"}]
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer",
            "num_threads", "prefix", "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpoolctl.threadpool_info()]


def numpy_blas_summary() -> str:
    """Short string: numpy's BLAS, e.g. 'openblas 0.3.31 SkylakeX pthreads threads=2'."""
    import numpy as np  # noqa: F401

    for d in blas_info():
        if d.get("user_api") == "blas" and "numpy" in (d.get("filepath") or ""):
            return (f"{d['internal_api']} {d['version']} {d.get('architecture')} "
                    f"{d.get('threading_layer')} threads={d['num_threads']}")
    libs = [d for d in blas_info() if d.get("user_api") == "blas"]
    return str(libs)


def _pkg_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU model, cores, memory, cache, and package versions (read without importing them)."""
    info = {"cpu_model": None, "cpu_flags_simd": [], "l2_cache": None, "l3_cache": None}
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
        for line in txt.splitlines():
            if line.startswith("model name") and info["cpu_model"] is None:
                info["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                fl = line.split(":", 1)[1].split()
                info["cpu_flags_simd"] = [f for f in ("avx", "avx2", "fma", "avx512f",
                                                      "avx512bw", "avx512_vnni", "amx_tile")
                                          if f in fl]
                break
    except OSError:
        pass
    for lvl, idx in (("l2_cache", 2), ("l3_cache", 3)):
        try:
            for d in sorted(os.listdir("/sys/devices/system/cpu/cpu0/cache")):
                base = f"/sys/devices/system/cpu/cpu0/cache/{d}"
                if open(f"{base}/level").read().strip() == str(idx):
                    info[lvl] = open(f"{base}/size").read().strip()
        except OSError:
            pass
    info["logical_cpus"] = os.cpu_count()
    info["allowed_cpus"] = sorted(os.sched_getaffinity(0))
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        info["physical_cores"] = None
    info["python"] = platform.python_version()
    info["platform"] = platform.platform()
    info["versions"] = {p: _pkg_version(p) for p in
                        ("numpy", "numba", "llvmlite", "scipy", "torch", "jax", "jaxlib",
                         "threadpoolctl", "psutil")}
    info["env"] = {k: os.environ.get(k) for k in
                   OPENBLAS_VARS + ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                    "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "XLA_FLAGS")
                   if os.environ.get(k) is not None}
    return info
