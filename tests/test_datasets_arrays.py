"""Tests of the .npy/.npz loader, the scaling/binarisation helper and load_dataset."""

import subprocess
import sys

import numpy as np
import pytest

from npvae.datasets import DATASET_NAMES, load_dataset
from npvae.datasets.arrays import (
    binarize_array,
    check_images,
    check_labels,
    load_array_file,
    prepare,
)


def test_npy_2d_and_3d(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    np.save(tmp_path / "a.npy", x)
    got = load_array_file(tmp_path / "a.npy")
    np.testing.assert_array_equal(got.x, x)
    assert got.y is None and got.image_shape is None
    images = np.zeros((5, 6, 7), dtype=np.uint8)
    np.save(tmp_path / "b.npy", images)
    got = load_array_file(str(tmp_path / "b.npy"))
    assert got.x.shape == (5, 42) and got.image_shape == (6, 7) and got.x.dtype == np.uint8
    with pytest.raises(ValueError, match="only apply to .npz"):
        load_array_file(tmp_path / "a.npy", key="x")


@pytest.mark.parametrize("xkey, ykey", [("x", "y"), ("X", "labels"), ("images", None),
                                        ("data", "y")])
def test_npz_default_keys(tmp_path, xkey, ykey):
    x = np.ones((4, 2, 2))
    arrays = {xkey: x, "other": np.zeros(3)}
    if ykey:
        arrays[ykey] = np.arange(4)
    np.savez(tmp_path / "d.npz", **arrays)
    got = load_array_file(tmp_path / "d.npz")
    assert got.x.shape == (4, 4) and got.image_shape == (2, 2)
    if ykey:
        np.testing.assert_array_equal(got.y, np.arange(4))
    else:
        assert got.y is None


def test_npz_explicit_and_missing_keys(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=np.ones((3, 5)), target=np.arange(3), junk=np.ones(2))
    got = load_array_file(tmp_path / "d.npz", key="pixels", label_key="target")
    assert got.x.shape == (3, 5) and list(got.y) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"none of the data arrays .*\['pixels', 'target'"):
        load_array_file(tmp_path / "d.npz")
    with pytest.raises(ValueError, match=r"no array 'images'; it holds \['pixels'"):
        load_array_file(tmp_path / "d.npz", key="images")
    with pytest.raises(ValueError, match="no array 'y'"):
        load_array_file(tmp_path / "d.npz", key="pixels", label_key="y")
    with pytest.raises(ValueError, match=r"labels of d.npz have shape \(2,\); expected \(3,\)"):
        load_array_file(tmp_path / "d.npz", key="pixels", label_key="junk")


def test_nan_and_inf_are_reported_with_count_and_position(tmp_path):
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    x[3, 0] = np.inf
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).*first is at \[2, 1\] = nan"):
        load_array_file(tmp_path / "n.npy")
    images = np.zeros((2, 3, 3), dtype=np.float32)
    images[1, 2, 0] = -np.inf
    with pytest.raises(ValueError, match=r"1 non-finite.*\[1, 2, 0\] = -inf"):
        check_images(images)
    with pytest.raises(ValueError, match="non-finite"):
        check_labels(np.array([0.0, np.nan]), 2)


@pytest.mark.parametrize("shape, message", [
    ((5,), "1-D"),
    ((2, 1, 3, 3), "4-D.*drop a single channel"),
    ((2, 2, 2, 2, 2), "5 dimensions"),
    ((0, 4), "empty"),
    ((3, 0), "empty"),
])
def test_wrong_shapes(tmp_path, shape, message):
    np.save(tmp_path / "s.npy", np.zeros(shape))
    with pytest.raises(ValueError, match=message):
        load_array_file(tmp_path / "s.npy")


@pytest.mark.parametrize("array", [np.array([["a", "b"], ["c", "d"]]),
                                   np.zeros((2, 2), dtype=np.complex64),
                                   np.zeros((2, 2), dtype="datetime64[s]")])
def test_non_numeric_dtype(tmp_path, array):
    np.savez(tmp_path / "t.npz", x=array)
    with pytest.raises(TypeError, match="not numbers"):
        load_array_file(tmp_path / "t.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    objects = np.array([{"evil": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    with pytest.raises(ValueError, match="will not unpickle"):
        load_array_file(tmp_path / "o.npy")
    np.savez(tmp_path / "o.npz", x=np.ones((2, 2)), y=objects)
    with pytest.raises(ValueError, match=r"o.npz\['y'\] holds Python objects"):
        load_array_file(tmp_path / "o.npz")


def test_other_files_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="neither a .npy nor a .npz"):
        load_array_file(tmp_path / "a.csv")


def test_prepare_scaling():
    u8 = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(prepare(u8), [[0, 0.2, 1]], rtol=1e-6)
    assert prepare(u8).dtype == np.float32
    assert prepare(u8, dtype=np.float64).dtype == np.float64
    unit = np.array([0.0, 0.25, 1.0])
    np.testing.assert_array_equal(prepare(unit), unit)
    np.testing.assert_allclose(prepare(np.array([0.0, 51.0, 255.0])), [0, 0.2, 1])
    with pytest.raises(ValueError, match="cannot guess"):
        prepare(np.array([0.0, 127.5, 255.0]))  # not 8-bit pixel values
    np.testing.assert_allclose(prepare(np.array([0, 8, 16]), scale=16), [0, 0.5, 1])
    with pytest.raises(ValueError, match="cannot guess.*scale=<maximum value>"):
        prepare(np.array([0, 8, 16]))  # digits-like range: no silent guess
    np.testing.assert_allclose(prepare(np.array([-2.0, 0.0, 2.0]), scale="minmax"), [0, 0.5, 1])
    np.testing.assert_array_equal(prepare(np.full(3, 7.0), scale="minmax"), np.zeros(3))
    np.testing.assert_array_equal(prepare(np.array([-1.0, 3.0]), scale="none"), [-1, 3])
    np.testing.assert_array_equal(prepare(np.array([True, False])), [1, 0])
    with pytest.raises(ValueError, match="does not fit"):
        prepare(np.array([0, 300]), scale=255)
    with pytest.raises(ValueError, match="unknown scale"):
        prepare(unit, scale="zscore")
    with pytest.raises(ValueError, match="positive number"):
        prepare(unit, scale=0)
    with pytest.raises(ValueError, match="non-finite"):
        prepare(np.array([np.nan]))


def test_binarize_threshold_and_stochastic():
    x = np.array([[0.1, 0.5, 0.9]], dtype=np.float32)
    np.testing.assert_array_equal(prepare(x, binarize="threshold"), [[0, 0, 1]])
    np.testing.assert_array_equal(prepare(x, binarize="threshold", threshold=0.05), [[1, 1, 1]])
    p = np.tile(np.array([0.0, 0.2, 0.7, 1.0], dtype=np.float32), (20000, 1))
    a = prepare(p, binarize="stochastic", rng=np.random.default_rng(1))
    b = prepare(p, binarize="stochastic", rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_allclose(a.mean(axis=0), [0, 0.2, 0.7, 1], atol=0.015)
    rng = np.random.default_rng(2)
    assert not np.array_equal(binarize_array(p, "stochastic", rng=rng),
                              binarize_array(p, "stochastic", rng=rng))  # a new draw per epoch
    with pytest.raises(TypeError, match="default_rng"):
        prepare(x, binarize="stochastic")
    with pytest.raises(ValueError, match="unknown binarize"):
        prepare(x, binarize="otsu")
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        binarize_array(np.array([2.0]), "stochastic", rng=rng)


def test_load_dataset_unknown_name_lists_names():
    with pytest.raises(ValueError, match="valid names: sprites, digits, mnist, fashion-mnist"):
        load_dataset("cifar10")
    assert {"sprites", "digits", "mnist", "fashion-mnist"} <= set(DATASET_NAMES)
    with pytest.raises(ValueError, match="only used with name='sprites'"):
        load_dataset("digits", size=64)


def test_load_dataset_digits():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1500, 64) and ds.x_test.shape == (297, 64)
    assert ds.x_train.dtype == np.float32 and ds.image_shape == (8, 8)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    np.testing.assert_array_equal(ds.x_test, load_dataset("digits").x_test)
    assert not np.array_equal(ds.y_test, load_dataset("digits", seed=1).y_test)


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "npvae\[digits\]"'):
        load_dataset("digits")


def test_sklearn_is_imported_lazily():
    code = "import sys, npvae.datasets; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_load_dataset_from_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 4, 5), dtype=np.uint8)
    y = np.arange(40) % 3
    np.savez(tmp_path / "mine.npz", images=x, labels=y)
    ds = load_dataset("file", data=tmp_path / "mine.npz", seed=3)
    assert ds.x_train.shape == (36, 20) and ds.x_test.shape == (4, 20)
    assert ds.image_shape == (4, 5) and ds.x_train.dtype == np.float32
    assert ds.x_train.max() <= 1 and ds.y_train.dtype == np.int64
    joined = np.concatenate([ds.x_train, ds.x_test]) * 255
    np.testing.assert_allclose(np.sort(joined.sum(1)), np.sort(x.reshape(40, -1).sum(1)),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="needs data="):
        load_dataset("file")
    with pytest.raises(ValueError, match="only used with name='file'"):
        load_dataset("sprites", data=tmp_path / "mine.npz")
