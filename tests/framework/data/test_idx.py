import gzip
import struct
import zlib

import numpy as np
import pytest

from lamina import DataError
from lamina.data import IMAGES_MAGIC, LABELS_MAGIC, decode_idx, read_idx


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(4, 3, 5), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_reads_uint8_images(tmp_path, images, compress, idx_bytes, gz):
    data = idx_bytes(images)
    path = tmp_path / "images.idx"
    path.write_bytes(gz(data) if compress else data)

    x = read_idx(path, magic=IMAGES_MAGIC)

    assert x.dtype == np.uint8 and x.shape == (4, 3, 5)
    np.testing.assert_array_equal(x, images)
    x[0, 0, 0] = 7  # a writable copy, not a view of the file's bytes


def test_gzip_is_recognised_by_content_not_name(tmp_path, images, idx_bytes, gz):
    looks_raw = tmp_path / "train-images-idx3-ubyte"
    looks_raw.write_bytes(gz(idx_bytes(images)))
    looks_gz = tmp_path / "train-images-idx3-ubyte.gz"
    looks_gz.write_bytes(idx_bytes(images))

    np.testing.assert_array_equal(read_idx(looks_raw), images)
    np.testing.assert_array_equal(read_idx(looks_gz), images)


@pytest.mark.parametrize(
    ("type_code", "dtype", "values"),
    [
        (0x08, np.uint8, [0, 1, 200, 255]),
        (0x09, np.int8, [-128, -1, 0, 127]),
        (0x0B, np.int16, [-30000, -1, 2, 30000]),
        (0x0C, np.int32, [-(2**31), -1, 3, 2**31 - 1]),
        (0x0D, np.float32, [-1.5, 0.0, 0.25, 3e38]),
        (0x0E, np.float64, [-1e300, 0.0, 0.1, np.pi]),
    ],
)
def test_every_idx_type_decodes_big_endian_to_native(type_code, dtype, values, idx_bytes):
    expected = np.array(values, dtype=dtype).reshape(2, 2)
    x = decode_idx(idx_bytes(expected, type_code), source="mem")
    assert x.dtype == np.dtype(dtype) and x.dtype.isnative
    np.testing.assert_array_equal(x, expected)


def test_labels_file_where_images_expected_names_both_magics(tmp_path, idx_bytes):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(DataError) as info:
        read_idx(path, magic=IMAGES_MAGIC)
    message = str(info.value)
    assert str(path) in message and "2051" in message and "2049" in message


def test_wrong_dimension_count_is_a_magic_mismatch(tmp_path, images, idx_bytes):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(images))
    with pytest.raises(DataError, match="3 dimensions"):
        read_idx(path, magic=LABELS_MAGIC)


@pytest.mark.parametrize(
    "header",
    [b"PK\x03\x04", b"\x00\x01\x08\x01", b"\x00\x00\x0a\x01"],
    ids=["zip", "nonzero-prefix", "unknown-type"],
)
def test_not_an_idx_file(header):
    with pytest.raises(DataError, match="not an IDX file"):
        decode_idx(header + b"\x00" * 12, source="f")


@pytest.mark.parametrize("data", [b"", b"\x00\x00"], ids=["empty", "two-bytes"])
def test_too_short_for_a_magic(data):
    with pytest.raises(DataError, match=f"received {len(data)} bytes"):
        decode_idx(data, source="f")


def test_zero_dimensions_rejected():
    with pytest.raises(DataError, match="0 dimensions"):
        decode_idx(b"\x00\x00\x08\x00", source="f")


def test_truncated_header():
    data = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">I", 60000)
    with pytest.raises(DataError, match="header truncated.*need 16 header bytes, received 8"):
        decode_idx(data, source="f")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_truncated_payload_names_file_and_byte_counts(tmp_path, images, compress, idx_bytes, gz):
    data = idx_bytes(images)[:-7]  # payload 60 bytes, 53 left
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gz(data) if compress else data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert "60 bytes" in message and "received 53 bytes" in message
    assert "delete it" in message
    assert ("after decompression" in message) == compress


def test_trailing_bytes(tmp_path, images, idx_bytes):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(images) + b"\x00\x00")
    with pytest.raises(DataError, match="trailing bytes.* 60 bytes, received 62 bytes"):
        read_idx(path)


def _corrupt_crc(data: bytes) -> bytes:
    # The gzip trailer is CRC32 then size, 4 bytes each; flip a CRC bit.
    return data[:-8] + bytes([data[-8] ^ 0x01]) + data[-7:]


@pytest.mark.parametrize(
    "damage",
    [
        _corrupt_crc,
        lambda data: data[: len(data) // 2],
        lambda data: data[:10] + b"\xff" * (len(data) - 10),
    ],
    ids=["bad-crc", "truncated-stream", "garbage-deflate"],
)
def test_corrupt_gzip_is_a_data_error(tmp_path, images, damage, idx_bytes, gz):
    data = damage(gz(idx_bytes(images)))
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(data)  # the damage is real: the stdlib itself refuses it
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")
