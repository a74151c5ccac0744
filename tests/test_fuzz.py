"""Fuzz tests: Hypothesis strategies over checkpoint bytes and manifests, run-folder configs,
data files, CLI options and Python keyword arguments.

Every property is the same: the outcome is either success with exactly what the file or the
arguments say (no silent coercion) or the one documented error (CheckpointError, ValueError or
TypeError naming the problem; exit 2 with one line in the CLI), never another exception, a
hang (faulthandler kills a run stuck for 120 s) or an unbounded allocation (tracemalloc).

Size: ``FUZZ_SCALE`` times the CI counts below (about 30 s per pass in all); the
``thorough`` Hypothesis profile multiplies them by 20, and ``NPVAE_FUZZ_SCALE=N`` by N::

    HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz.py --hypothesis-show-statistics
"""

import faulthandler
import io
import json
import os
import sys
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npvae.cli import main
from npvae.datasets import load_array_file
from npvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npvae.training.estimator import VAE
from npvae.training.trainer import Callback
from tests import hostile as h

MiB = 1 << 20
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_SCALE = int(os.environ.get("NPVAE_FUZZ_SCALE", "20" if _PROFILE == "thorough" else "1"))


def fuzz(n):
    """Settings for a fuzz test of ``n`` examples in CI (times ``FUZZ_SCALE``)."""
    return settings(max_examples=n * FUZZ_SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@contextmanager
def guarded(limit_bytes=64 * MiB, seconds=120):
    """No hang (the process is killed with a traceback after ``seconds``) and no
    allocation peak above ``limit_bytes``."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        with h.peak_memory(limit_bytes):
            yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def same(a, b):
    """Equal as JSON values, with bools never equal to numbers and ints equal to floats."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 10**9, 2**31, 2**63, 1e308, "float32", "relu", "adam", ""]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=10)


# ----------------------------------------------------------------------------- checkpoint bytes
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real training checkpoint (early stopping, so with best_params): (bytes, model)."""
    path = tmp_path_factory.mktemp("fz") / "c.npz"
    x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32)
    VAE(latent_dim=2, hidden=(4,)).fit(x, validation_data=(x[:8],), epochs=2, batch_size=16,
                                       progress=False, early_stopping_patience=3,
                                       checkpoint_path=path)
    return path.read_bytes(), VAE.load(path)


def load_or_refuse(path):
    """``VAE.load(path)``, or None when it refused the file with one CheckpointError line."""
    with guarded():
        try:
            return VAE.load(path)
        except CheckpointError as exc:
            assert len(str(exc).splitlines()) == 1
            return None


mutations = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("zero"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(1, 16)),
    st.tuples(st.just("drop"), st.integers(0, 10**6), st.integers(1, 64)),
), min_size=1, max_size=4)


def mutate(data, ops):
    data = bytearray(data)
    for op, at, arg in ops:
        if not data:
            break
        i = at % len(data)
        if op == "flip":
            data[i] ^= arg
        elif op == "cut":
            del data[i:]
        elif op == "zero":
            data[i:i + arg] = bytes(len(data[i:i + arg]))
        elif op == "insert":
            data[i:i] = bytes([arg]) * arg
        else:
            del data[i:i + arg]
    return bytes(data)


@fuzz(400)
@given(ops=mutations)
def test_fuzz_checkpoint_bytes(checkpoint, tmp_path_factory, ops):
    data, original = checkpoint
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.npz"
    path.write_bytes(mutate(data, ops))
    model = load_or_refuse(path)
    if model is None:
        return
    # accepted: then it is exactly the original (the change hit a byte nothing depends on)
    np.testing.assert_array_equal(model.params.data, original.params.data)
    assert same(model.config(), original.config())


# ----------------------------------------------------------------------------- manifests, configs
def _paths(doc, prefix=()):
    """Every path into a JSON document (keys and list indices)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):
            out += _paths(v, (*prefix, i))
    return out


def _edit(doc, path, value, delete):
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@fuzz(200)
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_fuzz_checkpoint_manifest_and_config(checkpoint, tmp_path_factory, data, value,
                                             delete):
    raw, original = checkpoint
    entries = h.read_entries(io.BytesIO(raw))
    meta = h.meta_of(entries)
    paths = _paths(meta)
    where = data.draw(st.sampled_from(paths))
    meta = _edit(meta, where, value, delete)
    entries[h.META] = h.meta_bytes(text=json.dumps(meta))
    path = tmp_path_factory.getbasetemp() / "fuzz-meta.npz"
    h.write_entries(path, entries)
    model = load_or_refuse(path)
    if model is None:
        return
    # accepted: every model setting is what the file says, uncoerced
    config = meta["config"]
    for key, have in model.config().items():
        if key in config:
            want = config[key]
            assert same(have, want) or (key == "activation" and isinstance(want, dict)), (
                key, have, want)
    assert np.isfinite(model.params.data).all()


# ----------------------------------------------------------------------------- run folders
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from tests.test_cli import TINY
    out = tmp_path_factory.mktemp("fz") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--no-figures", "--out", str(out)]) == 0
    return out


@fuzz(60)
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_fuzz_run_folder_config(run_folder, capsys, data, value, delete):
    cfg_path = run_folder / "config.json"
    text = cfg_path.read_text()
    cfg = json.loads(text)
    where = data.draw(st.sampled_from(_paths(cfg)))
    try:
        cfg_path.write_text(json.dumps(_edit(json.loads(text), where, value, delete)))
        with guarded():
            code = main(["info", str(run_folder)])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, err
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
    finally:
        cfg_path.write_text(text)


# ----------------------------------------------------------------------------- data files
arrays = st.builds(
    lambda shape, dtype, seed: np.random.default_rng(seed).integers(0, 3, shape).astype(dtype),
    st.tuples(st.integers(1, 6), st.integers(1, 5)) | st.tuples(st.integers(1, 4),
                                                                 st.integers(1, 3),
                                                                 st.integers(1, 3)),
    st.sampled_from(["f4", "f8", "u1", "i8", "?", ">f4"]), st.integers(0, 99))


@fuzz(300)
@given(x=arrays, kind=st.sampled_from(["npy", "npz", "npz-deflate"]), ops=mutations,
       lie=st.none() | st.tuples(st.integers(0, 10**13), st.integers(0, 10**6)))
def test_fuzz_data_files(tmp_path_factory, x, kind, ops, lie):
    path = tmp_path_factory.getbasetemp() / f"fuzz-data.{kind[:3]}"
    member = h.npy_bytes(x, header_shape=lie)
    if kind == "npy":
        raw = member
    else:
        buf = io.BytesIO()
        h.write_entries(buf, {"x.npy": member}, zipfile.ZIP_DEFLATED if "deflate" in kind
                        else zipfile.ZIP_STORED)
        raw = buf.getvalue()
    path.write_bytes(mutate(raw, ops))
    with guarded():
        try:
            got = load_array_file(path)
        except (ValueError, TypeError) as exc:
            assert str(path) in str(exc) or "x" in str(exc)
            return
    assert got.x.shape == x.reshape(len(x), -1).shape  # accepted: sizes as written
    if kind != "npy":  # a zip member has a CRC-32; a bare .npy has no checksum at all
        np.testing.assert_array_equal(got.x, x.reshape(len(x), -1))


# ----------------------------------------------------------------------------- CLI options
class StopAtOnce(Callback):
    def on_train_begin(self, trainer):
        trainer.stop_training = True  # one step, then the normal stop path


_VALUES = st.one_of(
    st.integers(-3, 70).map(str), st.sampled_from(
        ["0", "1", "-1", "2147483648", "100000000", "1e308", "nan", "inf", "-inf", "1e-3",
         "3.5", "", " ", "none", "x", "512,256", "0,1", "1,,2", "999999999999999999999",
         "stochastic", "threshold", "minmax", "255", "auto", "relu", "gaussian", "/dev/null",
         "/proc/x", "/no/such/file.npz"]),
    st.text(max_size=6))
_OPTIONS = ["--dataset", "--data", "--n-train", "--n-test", "--binarize", "--scale",
            "--cache-dir", "--latent-dim", "--hidden", "--activation", "--likelihood",
            "--beta", "--samples", "--free-bits", "--epochs", "--batch-size", "--lr",
            "--lr-schedule", "--kl-warmup", "--early-stopping", "--clip-norm", "--seed",
            "--threads", "--download-timeout"]
_FLAGS = ["--conditional", "--no-progress", "--quiet"]


@fuzz(40)
@given(opts=st.lists(st.tuples(st.sampled_from(_OPTIONS), _VALUES), max_size=4),
       flags=st.lists(st.sampled_from(_FLAGS), max_size=2, unique=True))
def test_fuzz_cli_train_options(tmp_path_factory, monkeypatch, capsys, opts, flags):
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("NPVAE_DATA_DIR", str(base / "cache"))  # nothing is downloaded:
    for var in ("NPVAE_MNIST_URL", "NPVAE_FASHION_MNIST_URL"):  # nobody listens there
        monkeypatch.setenv(var, "http://127.0.0.1:9/")
    out = base / f"fuzz-run-{len(os.listdir(base))}"
    argv = ["train", "--n-train", "64", "--n-test", "16", "--hidden", "8", "--no-figures",
            "--no-progress", "--out", str(out)]
    for opt, value in opts:
        argv += [f"{opt}={value}"]
    argv += flags
    with guarded(256 * MiB):
        code = main(argv, callbacks=[StopAtOnce()])
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        assert len([ln for ln in err.splitlines() if "error" in ln]) == 1, (argv, err)


# ----------------------------------------------------------------------------- keyword arguments
_X = (np.random.default_rng(0).random((24, 5)) > 0.5).astype(np.float32)
_ANY = st.one_of(
    # sizes up to 2000, or absurd ones that the memory estimate must refuse (a legitimate
    # 400k-wide layer takes 250 MB and minutes here: the first thorough run met one)
    st.none(), st.booleans(), st.integers(-5, 2000),
    st.sampled_from([10**9, 10**12, 2**31, 2**63, -2**63]), st.floats(allow_nan=True),
    st.text(max_size=4), st.sampled_from(["1e-3", "10", "float32", "adam", "no", (), (4,),
                                          [3, 2.5], "512", object(), print, b"x", {1: 2}]))
_CTOR = {"latent_dim": 2, "hidden": (4,), "beta": 1.0, "n_samples": 1, "free_bits": 0.0,
         "dtype": "float32", "seed": 0, "init": "auto", "activation": "relu",
         "likelihood": "bernoulli", "variance": 1.0}
_FIT = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "optimizer": "adam", "lr_schedule": None,
        "kl_warmup_epochs": 0, "free_bits": None, "clip_norm": None, "weight_decay": 0.0,
        "seed": None, "threads": None, "binarize": None, "checkpoint_every": 1,
        "progress": False, "callbacks": (), "warm_start": False, "corruption": None}


def _type_ok(key, value):
    """Whether a value is of an accepted type for the argument (then only its range may be
    refused), so that an accepted call proves nothing of a wrong type got through."""
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    ints = ("latent_dim", "n_samples", "seed", "epochs", "batch_size", "checkpoint_every",
            "threads")
    if key in ints:
        return isinstance(value, int) and not isinstance(value, bool) or (
            value is None and key in ("seed", "threads"))
    if key in ("beta", "free_bits", "variance", "lr", "kl_warmup_epochs", "weight_decay",
               "clip_norm"):
        return num or (value is None and key in ("free_bits", "clip_norm"))
    if key in ("progress", "warm_start"):
        return isinstance(value, bool)
    if key == "hidden":
        return isinstance(value, (tuple, list)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value) or (
            isinstance(value, int) and not isinstance(value, bool))
    if key == "callbacks":
        return isinstance(value, (list, tuple)) and all(callable(v) for v in value)
    return True  # choices: refused by value


@fuzz(150)
@given(where=st.sampled_from(["ctor", "fit"]), data=st.data(), value=_ANY)
def test_fuzz_keyword_arguments(where, data, value):
    table = _CTOR if where == "ctor" else _FIT
    key = data.draw(st.sampled_from(sorted(table)))
    ctor, kw = dict(_CTOR), {**_FIT, "callbacks": [StopAtOnce()]}  # one step at most
    (ctor if where == "ctor" else kw)[key] = value
    if key == "callbacks" and where == "fit":
        kw["epochs"] = 1
    with guarded(256 * MiB):
        try:
            VAE(**ctor).fit(_X, **kw)
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            assert key.split("_")[0] in msg or key in msg or "likelihood" in msg \
                or "activation" in msg, (key, value, msg)
            assert "not iterable" not in msg and "could not convert" not in msg, msg
            return
    assert _type_ok(key, value), f"{key}={value!r} was accepted"


def test_fuzz_profiles_documented():
    assert FUZZ_SCALE >= 1
    assert "thorough" in __doc__ and "NPVAE_FUZZ_SCALE" in __doc__
    assert load_checkpoint and save_checkpoint  # used by the builders in tests/hostile.py
