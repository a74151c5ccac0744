"""Damaged and hostile checkpoints: one CheckpointError each (one line, exit 2 in the CLI),
checked before anything large is allocated, never a hang."""

import os
import re
import zipfile
import zlib

import numpy as np
import pytest

from npvae.cli import main
from npvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npvae.training.estimator import VAE
from tests import hostile as h

MiB = 1 << 20


def small_vae(**kw):
    return VAE(input_dim=6, latent_dim=2, hidden=(4,), **kw)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    small_vae().save(path)
    return path


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    """A training checkpoint with early stopping, so it holds train/best_params."""
    path = tmp_path_factory.mktemp("ck") / "train.npz"
    x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32)
    small_vae().fit(x, validation_data=(x[:8],), epochs=2, batch_size=16, progress=False,
                    early_stopping_patience=5, checkpoint_path=path)
    return path


def refused(path, match, load=VAE.load):
    with h.peak_memory(16 * MiB):
        exc = h.finishes(lambda: load(path))
    assert isinstance(exc, CheckpointError), repr(exc)
    assert str(path) in str(exc) and len(str(exc).splitlines()) == 1, str(exc)
    assert re.search(match, str(exc)), (match, str(exc))
    return exc


# ----------------------------------------------------------------------------- zip structure
def test_member_that_is_not_npy(saved):
    e = h.read_entries(saved)
    e["evil.txt"] = b"hello"
    h.write_entries(saved, e)
    refused(saved, "not a .npy member")


def test_duplicate_member(saved):
    with zipfile.ZipFile(saved, "a") as zf, pytest.warns(UserWarning):
        zf.writestr(h.META, h.meta_bytes({"format": "x"}))
    refused(saved, "appears twice")


@pytest.mark.parametrize("flags", [0x1, 0x40])
def test_encrypted_member(saved, flags):
    h.patch_member(saved, h.META, flags=flags)
    refused(saved, "encrypted")


@pytest.mark.parametrize("method", [99, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_unknown_compression(saved, method):
    h.patch_member(saved, "params/encoder.0.W.npy", method=method)
    refused(saved, "compression method")


def test_damaged_deflate_stream_in_metadata(tmp_path):
    path = tmp_path / "c.npz"
    small_vae().save(path)
    h.write_entries(path, h.read_entries(path), zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(h.META)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(h.META)
    for i in range(start + 5, start + info.compress_size - 5, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    refused(path, "damaged|truncated")


def test_member_claims_more_than_deflate_can_hold(saved):
    h.patch_member(saved, "params/decoder.out.W.npy", file_size=0xFFFFFF00)
    refused(saved, "no zip member can hold")


def test_truncated_and_empty_files(saved, tmp_path):
    data = saved.read_bytes()
    for n in (0, 3, 100, len(data) // 2, len(data) - 10):
        p = tmp_path / f"t{n}.npz"
        p.write_bytes(data[:n])
        refused(p, "not an npvae checkpoint|truncated|damaged")


# ----------------------------------------------------------------------------- not a file
def test_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    try:
        exc = h.finishes(lambda: VAE.load(fifo), seconds=15)
    finally:
        h.unblock_fifo(fifo)
    assert isinstance(exc, CheckpointError) and "FIFO" in str(exc), repr(exc)
    assert main(["info", str(fifo)]) == 2


def test_folder_and_device_refused(tmp_path):
    assert isinstance(h.finishes(lambda: load_checkpoint("/dev/zero")), CheckpointError)
    assert isinstance(h.finishes(lambda: load_checkpoint(tmp_path)), CheckpointError)


# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("field, value, match", [
    ("shape", "abc", "shape"), ("shape", [1.5, 2], "shape"), ("shape", [-1], "shape"),
    ("shape", [True], "shape"), ("name", 5, "array name"), ("name", "../x", "array name"),
    ("dtype", 7, "dtype"), ("dtype", "O", "dtype"), ("dtype", "<f4" * 100, "dtype"),
    ("dtype", [["a", "<f4"]], "dtype"), ("crc32", "x", "crc32"), ("crc32", -1, "crc32"),
])
def test_manifest_of_the_wrong_types(saved, field, value, match):
    h.edit_meta(saved, lambda m: m["arrays"][1].__setitem__(field, value))
    refused(saved, match)


@pytest.mark.parametrize("change", [
    lambda m: m.__setitem__("arrays", "nope"),
    lambda m: m.__setitem__("arrays", [5]),
    lambda m: m["arrays"][0].pop("crc32"),
    lambda m: m["arrays"].append(dict(m["arrays"][0])),
])
def test_malformed_manifest(saved, change):
    h.edit_meta(saved, change)
    refused(saved, "manifest|twice|damaged")


def test_member_header_claiming_1e12_elements(saved):
    e = h.read_entries(saved)
    e["params/encoder.0.W.npy"] = h.npy_bytes(np.zeros((6, 4), np.float32),
                                              header_shape=(10**6, 10**6))
    h.write_entries(saved, e)
    refused(saved, "header describes")


def test_consistent_member_too_large_for_memory(tmp_path, monkeypatch):
    """A deflate bomb whose every size agrees: refused by the memory estimate, not inflated."""
    path = tmp_path / "bomb.npz"
    save_checkpoint(path, {"x": np.zeros(64 * MiB, np.uint8)}, {}, compress=True)
    assert path.stat().st_size < MiB
    monkeypatch.setenv("NPVAE_MEMORY_LIMIT", "32M")
    refused(path, r"needs about 64 MiB", load=load_checkpoint)


def test_manifest_claiming_a_huge_model(saved):
    h.edit_meta(saved, lambda m: m["config"].__setitem__("input_dim", 10**9))
    refused(saved, "memory|does not fit")


def test_manifest_claiming_huge_arrays_for_a_small_model(saved):
    def grow(m):
        m["arrays"][1]["shape"] = [10**6, 10**6]
    h.edit_meta(saved, grow)
    refused(saved, "manifest says|header describes|expected")


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json(saved, depth):
    e = h.read_entries(saved)
    meta = h.meta_of(e)
    text = h.json.dumps(meta)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    e[h.META] = h.meta_bytes(text=text)
    h.write_entries(saved, e)
    refused(saved, "nested")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"x"', "\xff\xfe", "1" * 5000,
                                  '{"format": "npvae-checkpoint", "format_version": 1e400}'])
def test_damaged_metadata(saved, text):
    e = h.read_entries(saved)
    e[h.META] = h.npy_bytes(np.frombuffer(text.encode("utf-8", "surrogateescape")
                                          if text != "\xff\xfe" else b"\xff\xfe", np.uint8))
    h.write_entries(saved, e)
    refused(saved, "metadata|format_version")


def test_metadata_of_another_dtype(saved):
    e = h.read_entries(saved)
    e[h.META] = h.npy_bytes(np.zeros(4, np.float64))
    h.write_entries(saved, e)
    refused(saved, "1-D uint8")


@pytest.mark.parametrize("key, value, match", [
    ("dtype", None, "dtype"), ("dtype", "float16", "dtype"), ("beta", "10", "beta"),
    ("beta", True, "beta"), ("latent_dim", 2.0, "latent_dim"), ("activation", 5, "activation"),
    ("activation", {"name": "nope"}, "activation"), ("activation", "swish", "activation"),
    ("likelihood", ["x"], "likelihood"), ("encoder_hidden", "abc", "encoder_hidden"),
    ("encoder_hidden", [4.5], "encoder_hidden"), ("seed", -1, "seed"), ("init", 3, "init"),
    ("history", ["x"], "history"), ("history", [{"epoch": "1"}], "history"),
    ("history", {"a": 1}, "history"), ("training", "x", "training"),
    ("training", {"epoch": 1}, "training"), ("input_dim", "6", "input_dim"),
    ("cond_dim", None, "cond_dim"),
])
def test_config_values_of_the_wrong_type(saved, key, value, match):
    h.edit_meta(saved, lambda m: m["config"].__setitem__(key, value))
    refused(saved, match)


def test_nan_parameters(saved):
    arrays, config, _ = load_checkpoint(saved)
    arrays["params/encoder.0.W"] = np.full_like(arrays["params/encoder.0.W"], np.nan)
    save_checkpoint(saved, arrays, config)
    refused(saved, "NaN")


def test_all_nan_best_params_with_matching_crc(trained_ckpt, tmp_path):
    arrays, config, _ = load_checkpoint(trained_ckpt)
    assert "train/best_params" in arrays
    arrays["train/best_params"] = np.full_like(arrays["train/best_params"], np.nan)
    path = tmp_path / "nanbest.npz"
    save_checkpoint(path, arrays, config)  # a consistent CRC
    refused(path, "best weights.*NaN")
    assert np.isfinite(VAE.load(path, best=False).params.data).all()


def test_best_params_of_the_wrong_size(trained_ckpt, tmp_path):
    arrays, config, _ = load_checkpoint(trained_ckpt)
    arrays["train/best_params"] = np.zeros(3, np.float32)
    path = tmp_path / "b.npz"
    save_checkpoint(path, arrays, config)
    refused(path, "train/best_params")


@pytest.mark.parametrize("change", [
    lambda tr: tr.__setitem__("rng", {"shuffle": {"state": 1}, "noise": {}, "binarize": {}}),
    lambda tr: tr.__setitem__("step", "3"),
    lambda tr: tr["settings"].__setitem__("optimizer", "rmsprop"),
    lambda tr: tr.__setitem__("optimizer", {"t": "x"}),
])
def test_resume_from_a_damaged_training_state(trained_ckpt, tmp_path, change):
    path = tmp_path / "r.npz"
    arrays, config, _ = load_checkpoint(trained_ckpt)
    change(config["training"])
    save_checkpoint(path, arrays, config)
    x = np.zeros((40, 6), np.float32)

    def resume():
        small_vae().fit(x, validation_data=(x[:8],), epochs=3, batch_size=16, progress=False,
                        early_stopping_patience=5, checkpoint_path=path, resume=True)
    exc = h.finishes(resume)
    assert isinstance(exc, CheckpointError), repr(exc)


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("command", ["info", "sample", "eval", "reconstruct"])
def test_cli_turns_every_load_failure_into_one_line(saved, command, capsys, tmp_path):
    h.edit_meta(saved, lambda m: m["config"].__setitem__("activation", {"name": 3}))
    argv = [command, str(saved)]
    if command in ("sample", "reconstruct"):
        argv += ["--out", str(tmp_path / "x.png")]
    if command in ("eval", "reconstruct"):
        argv += ["--dataset", "sprites", "--n-test", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "activation" in err


def test_zlib_error_is_wrapped(saved, monkeypatch):
    """Whatever zlib raises deep inside a read becomes a CheckpointError."""
    import npvae.core.safe_npz as sn

    def boom(*a, **k):
        raise zlib.error("Error -3 while decompressing data")
    monkeypatch.setattr(sn, "read_data", boom)
    refused(saved, "damaged")
