"""Damaged and hostile data files: a clear ValueError in Python, one line and exit 2 in the
CLI, sizes checked from the headers before anything is read."""

import os
import zipfile

import numpy as np
import pytest

from npvae.cli import main
from npvae.datasets import load_array_file
from tests import hostile as h

MiB = 1 << 20


def refused(path, match):
    with h.peak_memory(16 * MiB):
        exc = h.finishes(lambda: load_array_file(path))
    assert isinstance(exc, ValueError), repr(exc)
    assert str(path) in str(exc), str(exc)
    assert match in str(exc), (match, str(exc))


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((50, 16)).astype(np.float32), y=rng.integers(0, 3, 50))
    return path


def test_truncated_npz(npz, tmp_path):
    data = npz.read_bytes()
    for n in (10, len(data) // 2, len(data) - 30):
        p = tmp_path / f"t{n}.npz"
        p.write_bytes(data[:n])
        refused(p, "truncated" if n > 10 else "not a readable")


def test_crc_damaged_npz(npz):
    data = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo("x.npy")
    data[info.header_offset + 30 + len("x.npy") + 200] ^= 0xFF
    npz.write_bytes(bytes(data))
    refused(npz, "CRC")


def test_header_claiming_1e12_rows(tmp_path):
    p = tmp_path / "big.npy"
    p.write_bytes(h.npy_bytes(np.zeros((4, 16), np.float32), header_shape=(10**12, 16)))
    refused(p, "header describes")
    q = tmp_path / "big.npz"
    h.write_entries(q, {"x.npy": p.read_bytes()})
    refused(q, "header describes")


def test_deflate_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    p = tmp_path / "bomb.npz"
    np.savez_compressed(p, x=np.zeros((64 * MiB // 16, 16), np.uint8))
    assert p.stat().st_size < MiB
    monkeypatch.setenv("NPVAE_MEMORY_LIMIT", "256M")
    refused(p, "needs about")


def test_member_claiming_more_than_deflate_can_hold(npz):
    h.patch_member(npz, "x.npy", file_size=0xFFFFFF00)
    refused(npz, "no zip member can hold")


def test_fifo_as_data(tmp_path, capsys):
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    try:
        exc = h.finishes(lambda: load_array_file(fifo))
        assert isinstance(exc, ValueError) and "FIFO" in str(exc)
        assert h.finishes(lambda: main(["train", "--data", str(fifo), "--no-figures"])) is None
    finally:
        h.unblock_fifo(fifo)
    err = capsys.readouterr().err
    assert "not a regular file" in err and "Traceback" not in err


def _train(data, tmp_path, *extra):
    return main(["train", "--data", str(data), "--hidden", "8", "--latent-dim", "2",
                 "--epochs", "1", "--no-progress", "--no-figures", "--out",
                 str(tmp_path / "r"), *extra])


def test_one_huge_label_with_conditional(tmp_path, capsys):
    y = np.zeros(40, np.int64)
    y[7] = 10**9
    p = tmp_path / "l.npz"
    np.savez(p, x=np.random.default_rng(0).random((40, 16)).astype(np.float32), y=y)
    with h.peak_memory(64 * MiB):
        assert _train(p, tmp_path, "--conditional") == 2
    err = capsys.readouterr().err
    assert "1000000000" in err and "np.unique" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_scale_none_binarize_stochastic_out_of_range(tmp_path, capsys, command):
    p = tmp_path / "wide.npy"
    np.save(p, np.random.default_rng(0).random((40, 16)).astype(np.float32) * 2)
    if command == "train":
        code = _train(p, tmp_path, "--scale", "none", "--binarize", "stochastic")
    else:
        ok = tmp_path / "ok.npy"
        np.save(ok, np.random.default_rng(0).random((40, 16)).astype(np.float32))
        assert _train(ok, tmp_path) == 0
        capsys.readouterr()
        code = main(["eval", str(tmp_path / "r"), "--data", str(p), "--scale", "none",
                     "--binarize", "stochastic", "-k", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "[0, 1]" in err and "--scale" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncate", "crc", "header"])
def test_cli_damaged_data_file_one_line(npz, tmp_path, capsys, damage):
    data = bytearray(npz.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "crc":
        data[len(data) // 3] ^= 0xFF
    else:
        h.write_entries(npz, {"x.npy": h.npy_bytes(np.zeros((4, 16), np.float32),
                                                   header_shape=(10**12, 16))})
        data = npz.read_bytes()
    npz.write_bytes(bytes(data))
    assert _train(npz, tmp_path) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2 and "d.npz" in err
