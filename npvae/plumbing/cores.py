"""How many threads a step should use: the cores that other processes leave free.

On a machine where another process keeps a core busy, a parallel loop or GEMM split over
two threads waits, at every barrier, for the thread that shares the busy core: the
operating system gives that thread half the core in slices of milliseconds, and the step
stalls for them. One thread on the free core is then faster than two (measured at batch
128 on 2 cores with one busy process: 18.7k samples/s on 2 threads, 38.3k on 1).

:class:`CoreGovernor` reads, every ``interval`` seconds, how much CPU time the machine's
allowed cores spent busy (``/proc/stat``) and how much of it was this process's own
(``os.times``); the rest belongs to other processes. The next steps use as many threads as
there are cores left, never more than the thread count the user set. Changes need a
margin (hysteresis), so a flickering load does not make the count flicker.

Reproducibility: with npvae's split GEMM (:mod:`npvae.plumbing.gemm`: a fixed set of
blocks, each computed whole by one sequential MKL or OpenBLAS call) and kernels whose
reductions use fixed blocks, the training step gives bit-identical results on any thread
count, so adapting the count changes nothing but the speed (``tests/test_cores.py`` checks
it). ``np.dot`` (``NPVAE_GEMM=numpy``) sums in an order that depends on OpenBLAS's thread
count, so :func:`npvae.kernels.get_kernels` enables the governor only with the split GEMM.
``NPVAE_ADAPT_THREADS=0`` turns it off.
"""

from __future__ import annotations

import os
import time

__all__ = ["CoreGovernor", "read_cpu_times", "read_cpu_stall", "enabled"]

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Cores taken by others before a thread is given up, and at most taken for it to be given
# back (between the two: no change). Low, because a busy process that shares a core with one
# of our threads gets only about half of it: measured as 0.5 of a core, while our step
# already waits at every barrier for the thread beside it.
DOWN_AT = 0.35
UP_AT = 0.2
STALE = 4  # a reading over more than this many intervals is a pause in training, not a load
PROBE = 0.1  # seconds to the first reading after a start or a pause: react within ~0.1 s
QUICK = 0.03  # seconds to a first look at the CPU pressure after a start or a pause ...
STALLED = 0.25  # ... where threads waiting for a CPU this fraction of the time gives one up


def enabled():
    """False when ``NPVAE_ADAPT_THREADS=0``."""
    return os.environ.get("NPVAE_ADAPT_THREADS", "1").strip() != "0"


def allowed_cpus():
    """The CPUs this process may run on (its affinity), or None where unknown."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_cpu_times(cpus, path="/proc/stat"):
    """Busy seconds summed over ``cpus`` (every state but idle and iowait; ``steal``,
    time a hypervisor gave to another machine, counts as busy), or None if unreadable."""
    wanted = {f"cpu{c}" for c in cpus}
    busy = 0
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                fields = line.split()
                if fields[0] in wanted:
                    vals = [int(v) for v in fields[1:9]]
                    busy += sum(vals) - vals[3] - vals[4]
    except (OSError, ValueError, IndexError):
        return None
    return busy / _HZ


def read_cpu_stall(path="/proc/pressure/cpu"):
    """Seconds in which at least one runnable thread of the machine waited for a CPU
    (the ``some total`` of Linux's pressure stall information), or None if unreadable."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_cpu_seconds():
    """CPU seconds of every thread of this process so far."""
    t = os.times()
    return t.user + t.system


class CoreGovernor:
    """Picks the thread count of the next steps from the cores other processes leave free.

    Parameters
    ----------
    interval : float, default 0.25
        Seconds between readings; a reading has a resolution of one clock tick (10 ms)
        per core, so shorter intervals are noisy.
    cpus : sequence of int, optional
        The CPUs to watch (default: this process's affinity).
    clock, busy_seconds, own_seconds, stall_seconds : callables, optional
        Sources of wall time, the watched CPUs' busy seconds, this process's CPU seconds
        and the machine's CPU stall seconds (``/proc/pressure/cpu``, used only when the
        process may run on every CPU; the tests pass fakes).

    Notes
    -----
    :meth:`threads` is called once per step and costs one clock read between readings.
    A reading that spans more than ``STALE`` intervals (the steps stopped: an evaluation,
    a paused program, a benchmark's other cases) only starts a new interval: what other
    processes did while this one was not stepping says little about the next steps, and
    acting on it cost the first half second after every pause. The first interval after a
    start or a pause is ``PROBE`` seconds, so a load that is there is seen within about
    0.1 s (a reading's error is up to two clock ticks, 20 ms, over 100 ms: 0.2 of a core;
    a false reading costs one interval on fewer threads). Sooner still, ``QUICK`` s after
    a start or a pause, a machine whose threads wait for a CPU over a quarter of the time
    (``/proc/pressure/cpu``) gives up one thread at once.
    """

    def __init__(self, interval=0.25, cpus=None, clock=time.perf_counter, busy_seconds=None,
                 own_seconds=own_cpu_seconds, stall_seconds=None):
        self.interval = float(interval)
        self.cpus = list(cpus) if cpus is not None else (allowed_cpus() or [])
        self.clock = clock
        self.busy_seconds = busy_seconds or (lambda: read_cpu_times(self.cpus))
        self.own_seconds = own_seconds
        self.foreign = 0.0  # cores other processes used over the last interval
        self.current = None  # the count chosen last (None: not yet)
        self._last = None
        self._wait = PROBE  # seconds from the last reading to the next one
        every_cpu = cpus is None and len(self.cpus) == (os.cpu_count() or 0)
        self.stall_seconds = stall_seconds or (read_cpu_stall if every_cpu else lambda: None)
        self._quick = None  # (time, stall seconds) of a start or a pause, until looked at

    def _quick_look(self, now):
        """Within ``QUICK`` s of a start or a pause: if some thread waited for a CPU more
        than ``STALLED`` of the time (Linux's pressure stall information, in microseconds,
        where /proc/stat counts 10 ms ticks), give up a thread now rather than at the first
        reading. None of it counts as a reading: that still comes after ``PROBE``."""
        start, self._quick = self._quick, None
        stall = self.stall_seconds()
        if start is None or stall is None or start[1] is None or now <= start[0]:
            return
        if (stall - start[1]) / (now - start[0]) > STALLED and self.current > 1:
            self.current -= 1

    def _sample(self):
        busy = self.busy_seconds()
        return None if busy is None else (self.clock(), busy, self.own_seconds())

    def threads(self, cap):
        """The number of threads (1 to ``cap``) the next step should use."""
        if cap <= 1 or not self.cpus:
            return cap
        if self.current is None or self.current > cap:
            self.current = cap
        now = self.clock()
        if self._last is not None and now - self._last[0] < min(self._wait, self.interval):
            if self._quick is not None and now - self._quick[0] >= QUICK:
                self._quick_look(now)
            return min(self.current, cap)
        sample = self._sample()
        if sample is None:  # no /proc/stat: never adapt
            self.cpus = []
            return cap
        fresh = self._last is not None and sample[0] - self._last[0] <= STALE * self.interval
        self._wait = self.interval if fresh else PROBE
        self._quick = None if fresh else (sample[0], self.stall_seconds())
        if fresh:
            wall = sample[0] - self._last[0]
            used = (sample[1] - self._last[1]) - (sample[2] - self._last[2])
            self.foreign = max(0.0, used / wall)
            free = len(self.cpus) - self.foreign
            down, up = int(free + DOWN_AT), int(free + UP_AT)  # up <= down: one can fire
            if down < self.current:  # others took more than DOWN_AT of a core we use
                self.current = max(1, down)
            elif up > self.current:  # they left all but UP_AT of another core free
                self.current = up
            self.current = min(self.current, cap)
        self._last = sample
        return self.current


class ThreadPacer:
    """Applies a :class:`CoreGovernor` to Numba's thread count before each step.

    The user's setting (``numba.set_num_threads``, ``fit(threads=...)``) is the cap: when
    the count found is not the one this pacer set last, the user changed it, and it becomes
    the new cap. Numba's count is per Python thread, so the state is too.
    """

    def __init__(self, governor=None):
        import threading

        from npvae.plumbing.gemm import thread_count

        self.governor = governor or CoreGovernor()
        self._count = thread_count
        self._local = threading.local()

    def __call__(self):
        import numba

        loc = self._local
        n = self._count()
        if n != getattr(loc, "set", None):
            loc.cap = n
        want = self.governor.threads(loc.cap)
        if want != n:
            numba.set_num_threads(want)
        loc.set = want
        return want
