"""A controlled competing load: one busy process pinned to one core, paused between uses.

``BusyCore(cpu)`` starts ``python -c "while True: pass"`` pinned to ``cpu`` and stops it at
once (SIGSTOP). ``with load.on():`` resumes it (SIGCONT) for the length of the block, so a
harness can time a case with and without the load in one rotation, the load's process
started once. A stopped process takes no CPU time, so the quiet windows stay quiet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

_SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


class BusyCore:
    """One process spinning on ``cpu`` while :meth:`on` is active.

    Parameters
    ----------
    cpu : int
        The core to keep busy (it must be in this process's affinity).
    settle_s : float, default 0.05
        Seconds after resuming before the block starts, so the load is running.
    """

    def __init__(self, cpu, settle_s=0.05):
        self.cpu = int(cpu)
        self.settle_s = settle_s
        self.proc = subprocess.Popen([sys.executable, "-c", _SPIN, str(self.cpu)])
        os.kill(self.proc.pid, signal.SIGSTOP)

    @contextlib.contextmanager
    def on(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        try:
            time.sleep(self.settle_s)
            yield self
        finally:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def loaded(case, load):
    """The case dict of :func:`bench.common.time_interleaved` with ``load`` on during its
    warm-up and windows; it expects one more foreign core in its windows."""
    def warm(calls, secs):
        with load.on():
            return case["warm"](calls, secs)

    def window(min_s):
        with load.on():
            return case["window"](min_s)

    return {**case, "warm": warm, "window": window, "load": 1.0}
