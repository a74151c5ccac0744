"""Tests of the IDX reader and writer."""

import gzip
import os

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npvae.datasets.idx import encode_idx, read_idx, write_idx

DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]


def _arrays():
    dtype = st.sampled_from(DTYPES).map(np.dtype)
    shape = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    return dtype.flatmap(lambda dt: hnp.arrays(dt, shape, elements=_elements(dt)))


def _elements(dt):
    if dt.kind == "f":
        return st.floats(width=dt.itemsize * 8, allow_nan=False)
    return None


@settings(max_examples=60, deadline=None)
@given(_arrays(), st.booleans())
def test_round_trip_bytes(array, compress):
    data = encode_idx(array)
    if compress:
        data = gzip.compress(data)
    back = read_idx(data)
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", DTYPES + [">i4", "<f8"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip_file(tmp_path, dtype, name):
    array = (np.arange(60) - 20).astype(dtype).reshape(3, 4, 5)
    path = tmp_path / name
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    assert read_idx(str(path)).shape == (3, 4, 5)
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind


def test_header_layout_is_big_endian_like_mnist():
    data = encode_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert int.from_bytes(data[:4], "big") == 2051  # the MNIST image magic number
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    labels = encode_idx(np.array([1, 2], dtype=np.uint8))
    assert int.from_bytes(labels[:4], "big") == 2049
    word = encode_idx(np.array([1], dtype=np.int32))
    assert word[-4:] == b"\x00\x00\x00\x01"


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.int16)
    path = tmp_path / "plain-name"
    write_idx(path, array, compress=True)
    np.testing.assert_array_equal(read_idx(path), array)
    path2 = tmp_path / "x.gz"
    write_idx(path2, array, compress=False)
    np.testing.assert_array_equal(read_idx(path2), array)


def test_wrong_magic():
    data = bytearray(encode_idx(np.zeros(3, np.uint8)))
    data[0] = 1
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bytes(data))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(b"PK\x03\x04 a zip file")


def test_unknown_dtype_code():
    data = bytearray(encode_idx(np.zeros(3, np.uint8)))
    data[2] = 0x0A
    with pytest.raises(ValueError, match="unknown IDX dtype code 0x0A"):
        read_idx(bytes(data))


def test_truncated_data_header_and_gzip():
    data = encode_idx(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="truncated: shape \\(4, 5\\) of float32 needs 80"):
        read_idx(data[:-1])
    with pytest.raises(ValueError, match="truncated header"):
        read_idx(data[:9])
    with pytest.raises(ValueError, match="too short"):
        read_idx(b"\x00\x00")
    with pytest.raises(ValueError, match="gzip"):
        read_idx(gzip.compress(data)[:-10])


def test_trailing_bytes(tmp_path):
    data = encode_idx(np.zeros((4, 5), np.uint8)) + b"\x00\x00"
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"{path}: 2 trailing bytes"):
        read_idx(path)


def test_unsupported_inputs():
    for dtype in (np.uint16, np.int64, np.bool_, np.complex64):
        with pytest.raises(TypeError, match="IDX cannot store dtype"):
            encode_idx(np.zeros(2, dtype=dtype))
    with pytest.raises(TypeError, match="path .* or bytes"):
        read_idx(12)
