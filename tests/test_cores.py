"""The thread governor (npvae.plumbing.cores): its arithmetic on fake readings, a real
busy process, and the property that makes adapting safe: with npvae's split GEMM (MKL or
OpenBLAS), training gives the same bits on any thread count, even when the count changes
between steps."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from npvae.plumbing import cores


class FakeMachine:
    """Wall clock, busy seconds of 2 CPUs and this process's CPU seconds, advanced by hand."""

    def __init__(self):
        self.t = self.busy = self.own = self.stall = 0.0

    def run(self, seconds, ours, others, stalled=0.0):
        self.t += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds
        self.stall += stalled * seconds

    def governor(self, pressure=False):
        return cores.CoreGovernor(interval=0.25, cpus=[0, 1], clock=lambda: self.t,
                                  busy_seconds=lambda: self.busy, own_seconds=lambda: self.own,
                                  stall_seconds=(lambda: self.stall) if pressure else None)


def test_gives_up_a_core_that_another_process_takes_and_takes_it_back():
    m = FakeMachine()
    g = m.governor()
    assert g.threads(2) == 2
    m.run(0.3, ours=2.0, others=0.0)
    assert g.threads(2) == 2
    m.run(0.3, ours=1.0, others=1.0)  # a busy process arrives
    assert g.threads(2) == 1 and g.foreign == pytest.approx(1.0)
    m.run(0.1, ours=1.0, others=1.0)
    assert g.threads(2) == 1  # between readings: no change
    m.run(0.6, ours=1.0, others=0.0)  # it leaves (over the reading: 0.14 of a core taken)
    assert g.threads(2) == 2
    m.run(0.3, ours=1.5, others=0.5)  # it comes back and shares a core with our thread
    assert g.threads(2) == 1


def test_a_reading_across_a_pause_only_starts_a_new_interval():
    """Others' load while this process was not stepping (longer than STALE intervals) moves
    nothing; the next regular reading decides."""
    m = FakeMachine()
    g = m.governor()
    g.threads(2)
    m.run(0.3, ours=2.0, others=0.0)
    assert g.threads(2) == 2
    m.run(5.0, ours=0.0, others=2.0)  # paused while another program ran on both cores
    assert g.threads(2) == 2
    m.run(0.3, ours=2.0, others=0.0)
    assert g.threads(2) == 2
    m.run(5.0, ours=0.0, others=2.0)
    g.threads(2)
    m.run(cores.PROBE * 1.01, ours=1.0, others=1.0)  # a load that stays after the pause is seen
    assert g.threads(2) == 1  # after PROBE seconds, not a whole interval
    m.run(0.1, ours=1.0, others=0.0)
    assert g.threads(2) == 1  # then readings are an interval apart again
    m.run(0.2, ours=1.0, others=0.0)
    assert g.threads(2) == 2


def test_cpu_pressure_gives_up_a_thread_soon_after_a_start_or_a_pause():
    """QUICK seconds after a start, threads that waited for a CPU most of the time (PSI)
    cost a thread at once; little waiting changes nothing; between readings it looks once."""
    m = FakeMachine()
    g = m.governor(pressure=True)
    assert g.threads(2) == 2
    m.run(cores.QUICK * 1.5, ours=1.5, others=0.5, stalled=0.9)
    assert g.threads(2) == 1
    m = FakeMachine()
    g = m.governor(pressure=True)
    g.threads(2)
    m.run(cores.QUICK * 1.5, ours=2.0, others=0.0, stalled=0.1)
    assert g.threads(2) == 2
    m.run(cores.QUICK * 1.5, ours=1.5, others=0.5, stalled=1.0)
    assert g.threads(2) == 2  # one look per start: the readings decide from here
    m.run(5.0, ours=0.0, others=0.0)
    g.threads(2)  # after a pause: a new look
    m.run(cores.QUICK * 1.5, ours=1.5, others=0.5, stalled=1.0)
    assert g.threads(2) == 1


def test_reads_the_pressure_stall_total(tmp_path):
    f = tmp_path / "cpu"
    f.write_text("some avg10=0.00 avg60=0.28 avg300=5.33 total=7710847627\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert cores.read_cpu_stall(str(f)) == pytest.approx(7710.847627)
    assert cores.read_cpu_stall(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("start_busy", [False, True])
def test_a_load_between_the_margins_changes_nothing_either_way(start_busy):
    """Between UP_AT and DOWN_AT of a core taken, the count stays where it was."""
    m = FakeMachine()
    g = m.governor()
    g.threads(2)
    m.run(0.3, ours=1.0, others=1.0 if start_busy else 0.0)
    before = g.threads(2)
    assert before == (1 if start_busy else 2)
    for _ in range(5):
        m.run(0.3, ours=1.0, others=(cores.UP_AT + cores.DOWN_AT) / 2)
        assert g.threads(2) == before


def test_never_more_than_the_cap_and_never_below_one():
    m = FakeMachine()
    g = m.governor()
    assert g.threads(1) == 1
    assert g.threads(2) == 2  # the first reading
    m.run(0.3, ours=0.1, others=2.0)  # everything taken
    assert g.threads(2) == 1
    m.run(0.3, ours=1.0, others=0.0)
    assert g.threads(1) == 1  # the user lowered the cap
    m.run(0.3, ours=1.0, others=0.0)
    assert g.threads(2) == 2


def test_without_cpu_times_it_never_adapts():
    g = cores.CoreGovernor(cpus=[0, 1], busy_seconds=lambda: None)
    assert g.threads(2) == 2 and g.cpus == []
    assert g.threads(2) == 2


def test_reads_the_allowed_cpus_lines_of_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    hz = cores._HZ
    stat.write_text(
        f"cpu  {9 * hz} 0 0 {99 * hz} 0 0 0 0 0 0\n"
        f"cpu0 {hz} {hz} {hz} {50 * hz} {7 * hz} {hz} {hz} {hz} 0 0\n"
        f"cpu1 {5 * hz} 0 0 {49 * hz} 0 0 0 0 0 0\n"
        "intr 12345\n")
    assert cores.read_cpu_times([0], stat) == pytest.approx(6.0)  # idle, iowait excluded
    assert cores.read_cpu_times([0, 1], stat) == pytest.approx(11.0)
    assert cores.read_cpu_times([0], tmp_path / "missing") is None


def test_the_pacer_takes_the_users_setting_as_its_cap():
    numba = pytest.importorskip("numba")
    m = FakeMachine()
    pace = cores.ThreadPacer(m.governor())
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        m.run(0.3, ours=1.0, others=0.0)
        assert pace() == 1 and numba.get_num_threads() == 1
        if numba.config.NUMBA_NUM_THREADS >= 2:
            numba.set_num_threads(2)  # the user raises it: the new cap
            m.run(0.3, ours=2.0, others=0.0)
            assert pace() == 2
            m.run(0.3, ours=1.0, others=1.0)
            assert pace() == 1 and numba.get_num_threads() == 1
            m.run(0.3, ours=1.0, others=0.0)
            assert pace() == 2 and numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(old)


BUSY = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not os.path.exists("/proc/stat"), reason="needs 2 CPUs and /proc/stat")
def test_a_real_busy_process_takes_a_thread_away():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    g = cores.CoreGovernor(interval=0.3, cpus=cpus)
    g.threads(2)
    busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cpus[1])])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and g.threads(2) != 1:
            time.sleep(0.1)
        assert g.threads(2) == 1, f"others used {g.foreign:.2f} cores"
    finally:
        busy.kill()
        busy.wait()


def train(threads_per_step, n, steps=4):
    """Parameters after ``steps`` train_steps at batch ``n``, step i on
    ``threads_per_step[i % len]`` Numba threads (the pacer switched off)."""
    import numba

    from npvae import VAE, Adam

    m = VAE(784, 20, hidden=(400,), seed=1)
    opt = Adam(m.params)
    pace, m.kernels.pace = m.kernels.pace, None
    rng = np.random.default_rng(5)
    old = numba.get_num_threads()
    try:
        for i in range(steps):
            numba.set_num_threads(threads_per_step[i % len(threads_per_step)])
            m.train_step((rng.random((n, 784)) < 0.4).astype(np.float32), opt, rng=rng)
    finally:
        numba.set_num_threads(old)
        m.kernels.pace = pace
    return m.params.data.copy()


@pytest.mark.parametrize("n", [1, 16, 128])
def test_training_is_bit_identical_on_any_thread_count(n):
    numba = pytest.importorskip("numba")
    from npvae.kernels import gemm_info, get_kernels

    if gemm_info("numba")["provider"] == "numpy" or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs npvae's split GEMM (not NPVAE_GEMM=numpy) and 2 Numba threads")
    assert get_kernels("numba").pace is not None or not cores.enabled()
    two = train([2], n)
    np.testing.assert_array_equal(train([1], n), two)
    np.testing.assert_array_equal(train([1, 2], n), two)  # the count changing every step
