"""Tests for npvae.training.checkpoint: round trips, atomic writes, and damaged files."""

import io
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npvae.training import archive as ckpt  # the file format (re-exported by checkpoint)
from npvae.training import archive_save as writer  # its writer (save_checkpoint)
from npvae.training.checkpoint import (
    CheckpointError,
    check_shapes,
    load_checkpoint,
    save_checkpoint,
)


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "params/encoder.0.W": rng.standard_normal((6, 4)).astype(np.float32),
        "params/encoder.0.b": np.zeros(4, np.float32),
        "optim/m": rng.standard_normal(10),
        "optim/step": np.array(7, dtype=np.int64),
        "data/idx": np.arange(5, dtype=np.int32),
    }


def _assert_same(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name])


def _leftovers(directory):
    return [f for f in os.listdir(directory) if f.endswith(".tmp")]


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_with_nested_config(tmp_path, compress):
    path = tmp_path / "model.npz"
    config = {"model": {"sizes": [784, 400, 20], "likelihood": "bernoulli"},
              "beta": 1.0, "seed": 3, "note": None, "flags": [True, False],
              "best": float("inf")}
    save_checkpoint(path, _arrays(), config, compress=compress)
    arrays, loaded, meta = load_checkpoint(path, kind="npvae.VAE")
    _assert_same(arrays, _arrays())
    assert loaded == config
    assert meta["format"] == "npvae-checkpoint"
    assert meta["format_version"] == 1
    assert meta["kind"] == "npvae.VAE"
    assert "npvae_version" in meta
    assert [e["name"] for e in meta["arrays"]] == list(_arrays())


def test_round_trip_empty_config_and_no_arrays(tmp_path):
    path = tmp_path / "empty.npz"
    save_checkpoint(path, {}, {})
    arrays, config, _ = load_checkpoint(path)
    assert arrays == {} and config == {}


def test_tuples_come_back_as_lists(tmp_path):
    path = tmp_path / "t.npz"
    save_checkpoint(path, {}, {"sizes": (784, 400)})
    assert load_checkpoint(path)[1] == {"sizes": [784, 400]}


def test_plain_np_load_can_read_it(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {"a": 1})
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["optim/m"], _arrays()["optim/m"])
        meta = json.loads(npz[ckpt.META_KEY].tobytes())
    assert meta["config"] == {"a": 1}


def test_non_contiguous_and_fortran_arrays(tmp_path):
    base = np.arange(24.0).reshape(4, 6)
    arrays = {"f": np.asfortranarray(base), "s": base[:, ::2], "scalar": np.float32(2.5)}
    save_checkpoint(tmp_path / "c.npz", arrays, {})
    loaded = load_checkpoint(tmp_path / "c.npz")[0]
    np.testing.assert_array_equal(loaded["f"], base)
    np.testing.assert_array_equal(loaded["s"], base[:, ::2])
    assert loaded["scalar"].shape == () and loaded["scalar"].dtype == np.float32


_names = st.lists(
    st.from_regex(r"[a-z][a-z0-9_.]{0,6}(/[a-z0-9_][a-z0-9_.]{0,6}){0,2}", fullmatch=True),
    min_size=0, max_size=4, unique=True,
)
_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint16, np.bool_])


@settings(max_examples=40, deadline=None)
@given(names=_names, data=st.data())
def test_round_trip_property(names, data):
    arrays = {}
    for name in names:
        dtype = data.draw(_dtypes)
        arrays[name] = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3,
                                                                    min_side=0, max_side=4)))
    config = data.draw(st.dictionaries(
        st.text(max_size=5),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                     | st.floats(allow_nan=False),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                          max_size=3),
                     max_leaves=8),
        max_size=4))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.npz")
        save_checkpoint(path, arrays, config, kind="test.Kind")
        loaded, loaded_config, _ = load_checkpoint(path, kind="test.Kind")
    assert list(loaded) == list(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name], a)  # NaN == NaN here
    assert loaded_config == config


# ----------------------------------------------------------------------------- atomicity


def test_overwrite_replaces_old_file(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {"x": np.zeros(3)}, {"v": 1})
    save_checkpoint(path, {"x": np.ones(3)}, {"v": 2})
    arrays, config, _ = load_checkpoint(path)
    np.testing.assert_array_equal(arrays["x"], np.ones(3))
    assert config == {"v": 2}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["replace", "write_array", "fsync"])
def test_failure_mid_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, target):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {"x": np.zeros(3)}, {"v": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if target == "replace":
        monkeypatch.setattr(writer.os, "replace", boom)
    elif target == "fsync":
        monkeypatch.setattr(writer.os, "fsync", boom)
    else:
        monkeypatch.setattr(writer.np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"x": np.ones(3)}, {"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_keyboard_interrupt_mid_write_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"x": np.ones(3)}, {})
    assert os.listdir(tmp_path) == []


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "m.npz", {}, {})


def test_existing_permissions_kept(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {}, {})
    os.chmod(path, 0o640)
    save_checkpoint(path, {}, {})
    assert os.stat(path).st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- bad input on save


@pytest.mark.parametrize("config, where", [
    ({"lr": np.float32(1e-3)}, "config['lr']"),
    ({"model": {"act": object()}}, "config['model']['act']"),
    ({"sizes": [1, np.int64(2)]}, "config['sizes'][1]"),
    ({"m": {1: "a"}}, "non-string key"),
    ({"a": np.zeros(2)}, "config['a']"),
])
def test_non_json_config_refused(tmp_path, config, where):
    with pytest.raises(TypeError) as info:
        save_checkpoint(tmp_path / "m.npz", {}, config)
    assert where in str(info.value)
    assert os.listdir(tmp_path) == []


def test_config_must_be_dict(tmp_path):
    with pytest.raises(TypeError, match="config must be a dict"):
        save_checkpoint(tmp_path / "m.npz", {}, [1, 2])


def test_object_array_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_checkpoint(tmp_path / "m.npz", {"o": np.array([1, "a", None], dtype=object)}, {})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["", "/a", "a//b", "__meta__.json", "__x", "a b", "../x", "a\\b"])
def test_bad_array_names(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        save_checkpoint(tmp_path / "m.npz", {name: np.zeros(1)}, {})


def test_non_array_values_refused(tmp_path):
    with pytest.raises(TypeError, match="np.asarray"):
        save_checkpoint(tmp_path / "m.npz", {"x": [1.0, 2.0]}, {})
    with pytest.raises(TypeError, match="mask"):
        save_checkpoint(tmp_path / "m.npz", {"x": np.ma.masked_array([1.0], mask=[True])}, {})


# ----------------------------------------------------------------------------- damaged files


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"not an npvae checkpoint \(truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", os.urandom(1000), b"PK\x03\x04garbage", b"\x93NUMPY"])
def test_random_bytes(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not an npvae checkpoint"):
        load_checkpoint(path)


def test_plain_npz_without_meta(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="__meta__.json"):
        load_checkpoint(path)


def test_flipped_byte_in_array_data(tmp_path):
    path = tmp_path / "m.npz"
    arrays = _arrays()
    save_checkpoint(path, arrays, {})
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(arrays["optim/m"].tobytes())
    assert offset > 0
    data[offset + 17] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="'optim/m'.*damaged"):
        load_checkpoint(path)


def _rewrite(path, edit):
    """Rebuild the zip with consistent zip CRCs, applying edit(entries) first."""
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    edit(entries)
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)


def _npy_bytes(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def _edit_meta(entries, change):
    meta = json.loads(np.load(io.BytesIO(entries["__meta__.json.npy"])).tobytes())
    change(meta)
    entries["__meta__.json.npy"] = _npy_bytes(
        np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def test_manifest_checksum_catches_changed_data(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    changed = _arrays()["optim/m"].copy()
    changed[3] += 1.0
    _rewrite(path, lambda e: e.__setitem__("optim/m.npy", _npy_bytes(changed)))
    with pytest.raises(CheckpointError, match="'optim/m' fails its CRC-32"):
        load_checkpoint(path)


def test_manifest_shape_and_dtype_mismatch(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    _rewrite(path, lambda e: e.__setitem__("optim/m.npy", _npy_bytes(np.zeros(11))))
    with pytest.raises(CheckpointError, match="'optim/m' has shape"):
        load_checkpoint(path)
    save_checkpoint(path, _arrays(), {})
    _rewrite(path, lambda e: e.__setitem__("optim/m.npy", _npy_bytes(np.zeros(10, np.float32))))
    with pytest.raises(CheckpointError, match="'optim/m' has dtype"):
        load_checkpoint(path)


def test_missing_array(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    _rewrite(path, lambda e: e.pop("optim/m.npy"))
    with pytest.raises(CheckpointError, match="optim/m.*missing") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_unexpected_array(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    _rewrite(path, lambda e: e.__setitem__("extra.npy", _npy_bytes(np.zeros(2))))
    with pytest.raises(CheckpointError, match="extra.*not in the manifest"):
        load_checkpoint(path)


def test_newer_version(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, _arrays(), {})
    _rewrite(path, lambda e: _edit_meta(e, lambda m: m.update(format_version=2)))
    with pytest.raises(CheckpointError, match="newer npvae; upgrade"):
        load_checkpoint(path)


def test_wrong_format_name(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {}, {})
    _rewrite(path, lambda e: _edit_meta(e, lambda m: m.update(format="other")))
    with pytest.raises(CheckpointError, match="format is 'other'"):
        load_checkpoint(path)


def test_wrong_kind(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {}, {}, kind="npvae.ConditionalVAE")
    with pytest.raises(CheckpointError, match="'npvae.ConditionalVAE'.*expected 'npvae.VAE'"):
        load_checkpoint(path, kind="npvae.VAE")
    assert load_checkpoint(path)[2]["kind"] == "npvae.ConditionalVAE"


def test_object_array_refused_on_load(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {"o": np.zeros(2)}, {})
    obj = np.array([{"evil": 1}, None], dtype=object)
    _rewrite(path, lambda e: e.__setitem__("o.npy", _npy_bytes(obj)))
    with pytest.raises(CheckpointError, match="object array.*never unpickle"):
        load_checkpoint(path)


def test_damaged_metadata(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {}, {})
    _rewrite(path, lambda e: e.__setitem__(
        "__meta__.json.npy", _npy_bytes(np.frombuffer(b"{not json", dtype=np.uint8))))
    with pytest.raises(CheckpointError, match="metadata entry.*damaged"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.npz")


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


# ----------------------------------------------------------------------------- check_shapes


def test_check_shapes_passes_and_lists_every_problem():
    arrays = {"W": np.zeros((784, 300)), "b": np.zeros(400), "extra": np.zeros(1)}
    check_shapes(arrays, {"b": (400,)})
    with pytest.raises(CheckpointError) as info:
        check_shapes(arrays, {"W": (784, 400), "b": [400], "c": (20,)}, path="m.npz")
    msg = str(info.value)
    assert "W: expected (784, 400), file has (784, 300)" in msg
    assert "c: expected (20,), missing" in msg
    assert "b:" not in msg and msg.startswith("m.npz")
