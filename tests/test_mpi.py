"""Data-parallel training on two MPI processes, through ``mpiexec -n 2`` in a subprocess.

Skipped, with the reason, without mpi4py or mpiexec (``pip install -e ".[mpi]"``; CI installs
it). The programs run are in tests/mpi_cases.py. Timeouts are generous: the machine may be
shared and loaded, and each launch imports NumPy and Numba in two processes.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npvae.training.estimator import VAE

HERE = Path(__file__).resolve().parent
CASES = HERE / "mpi_cases.py"
LAUNCH_TIMEOUT = 240  # seconds for a whole launch that should end by itself
STOP_TIMEOUT = 60  # seconds for a job to end after a rank was killed or failed


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None, "mpi4py is not installed (pip install -e '.[mpi]')"
    exe = Path(sys.executable).with_name("mpiexec")
    found = str(exe) if exe.exists() else shutil.which("mpiexec")
    return found, "mpiexec is not on PATH nor beside the Python executable"


MPIEXEC, _WHY = _mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason=_WHY)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [
        env.get("PYTHONPATH")])])
    env.pop("NPVAE_MPI", None)
    return env


def launch(args, cwd, **kw):
    return subprocess.Popen([MPIEXEC, "-n", "2", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the MPI job did not end within {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def run_case(case, out):
    code, stdout, stderr = finish(launch([sys.executable, CASES, case, out], out),
                                  LAUNCH_TIMEOUT)
    assert code == 0, f"{case} failed ({code}):\n{stdout}\n{stderr}"
    return stdout


def wait_for(paths, proc, timeout=LAUNCH_TIMEOUT):
    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the job never reached its marks {paths}:\n{out}\n{err}")
        time.sleep(0.2)


# ------------------------------------------------------------------- same as one rank
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi_train")
    run_case("train", out)
    with np.load(out / "train.npz") as z:
        params = {k: z[k] for k in z.files}
    return params, json.loads((out / "train.json").read_text())


def one_rank(optimizer):
    sys.path.insert(0, str(HERE))
    try:
        import mpi_cases as c
    finally:
        sys.path.remove(str(HERE))
    m = c.model().fit(c.data(), validation_data=(c.data(60, seed=1),), optimizer=optimizer,
                      **c.FIT)
    return m.params.data, m.history_


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_two_ranks_at_batch_64_equal_one_process_at_batch_64(two_ranks, optimizer):
    """10 steps of global batch 64 (the last of each epoch 3 rows, split 2 / 1) on two
    ranks against one process. The ranks sum their shards' weighted gradients, the single
    process sums all 64 rows in one GEMM: the same sum in another order, so float32 rounding
    differs (about 1e-7 relative per gradient value). Allowed: 1e-5 absolute on weights of
    size ~1, some 100 ulps and 1% of one Adam step (lr 1e-3). SGD is checked too because
    Adam would hide a wrongly scaled gradient (it divides by sqrt(v)); a mean of the two
    shard means instead of the weighted sum would weight the last batches' rows 1/4, 1/4,
    1/2 instead of 1/3 each."""
    params, hist = two_ranks
    mine, history = one_rank(optimizer)
    ranks = params[optimizer]
    print(f"{optimizer}: max |2 ranks - 1 process| = {np.abs(ranks[0] - mine).max():.2g}")
    assert np.abs(ranks[0] - mine).max() < 1e-5
    for a, b in zip(hist[optimizer], history, strict=True):
        for key in ("train_loss", "val_loss", "val_recon", "val_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_ranks_parameters_are_bit_identical(two_ranks, optimizer):
    ranks = two_ranks[0][optimizer]
    np.testing.assert_array_equal(ranks[0], ranks[1])


def test_a_stop_asked_on_one_rank_stops_both_and_resumes_exactly(two_ranks):
    """Rank 1 alone sets stop_training after step 3: both ranks stop after step 4 (agreed
    in the next reduction), rank 0 writes the checkpoint, and resuming with 2 ranks ends
    where the uninterrupted 2-rank run ends, bit for bit."""
    params, hist = two_ranks
    assert hist["stopped"] == [["callback", 4], ["callback", 4]]
    np.testing.assert_array_equal(params["resumed"][0], params["adam"][0])
    np.testing.assert_array_equal(params["resumed"][1], params["adam"][0])


# --------------------------------------------------------------------- going wrong
def test_the_checksum_catches_a_perturbed_rank(tmp_path):
    out = run_case("drift", tmp_path)
    for rank in (0, 1):
        assert f"rank {rank}: RanksDiverged: MPI ranks [1] drifted from rank 0 by step 4" in out


def test_an_exception_on_one_rank_aborts_both(tmp_path):
    t = time.monotonic()
    code, out, err = finish(launch([sys.executable, CASES, "raises", tmp_path], tmp_path),
                            STOP_TIMEOUT)
    assert code != 0
    assert "deliberate failure on rank 1" in err and "aborting all ranks" in err
    assert "done" not in out
    print(f"aborted {time.monotonic() - t:.1f} s after the launch")


def test_a_killed_rank_stops_the_job_with_a_message(tmp_path):
    proc = launch([sys.executable, CASES, "long", tmp_path], tmp_path)
    wait_for([tmp_path / "pid.0", tmp_path / "pid.1"], proc)
    os.kill(int((tmp_path / "pid.1").read_text()), signal.SIGKILL)
    t = time.monotonic()
    code, out, err = finish(proc, STOP_TIMEOUT)
    assert code != 0
    assert "signal 9" in (out + err) or "Killed" in (out + err)
    print(f"job ended {time.monotonic() - t:.1f} s after the kill")


def _rank_pid(cwd, rank):
    """The pid of the MPI rank ``rank`` running in folder ``cwd`` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and os.readlink(proc / "cwd") == os.path.realpath(cwd)
                    and f"PMI_RANK={rank}".encode() in (proc / "environ").read_bytes()
                    .split(b"\0")):
                return int(proc.name)
        except OSError:  # gone, or not ours
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_cli_sigterm_to_rank_1_checkpoints_and_stops_both(tmp_path):
    """`mpiexec -n 2 npvae train`: one progress bar, one run folder written by rank 0;
    SIGTERM to rank 1 alone stops both after the same step with a checkpoint (exit 143)."""
    proc = launch([sys.executable, "-m", "npvae", "train", "--dataset", "digits",
                   "--epochs", "1000", "--hidden", "32", "--no-figures"], tmp_path)
    wait_for([tmp_path / "runs"], proc)
    wait_for([next((tmp_path / "runs").iterdir()) / "checkpoint.npz"], proc)
    pid = _rank_pid(tmp_path, 1)
    assert pid is not None, "rank 1 not found below mpiexec"
    os.kill(pid, signal.SIGTERM)
    code, out, err = finish(proc, STOP_TIMEOUT)
    assert code == 143, err
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json",
                                                     "metrics.jsonl"]
    assert err.count("epoch 1/1000:   0%") == 1 and err.count("loading digits") == 1
    assert err.count("interrupted: checkpoint saved") == 1
    saved = VAE.load(run / "checkpoint.npz")
    assert np.all(np.isfinite(saved.params.data))
    assert json.loads((run / "config.json").read_text())["result"]["stop_reason"] == \
        "interrupted"
