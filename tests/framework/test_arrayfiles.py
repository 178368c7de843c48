"""lamina.arrayfiles: .npy and .npz headers checked before a value is allocated."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from lamina.arrayfiles import BadArrayFile, open_npy, read_npy_header, read_npz, read_payload


def header(shape, descr: str = "<f4", fortran: bool = False, version=(1, 0)) -> bytes:
    buffer = io.BytesIO()
    write = (np.lib.format.write_array_header_1_0 if version == (1, 0)
             else np.lib.format.write_array_header_2_0)
    write(buffer, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buffer.getvalue()


def saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("array", [
    np.arange(12.0).reshape(3, 4),
    np.asfortranarray(np.arange(24, dtype=">f4").reshape(2, 3, 4)),
    np.zeros((0, 5), np.uint8),
    np.float32(2.5),
    np.array([True, False]),
    np.arange(6, dtype=np.int16)[::2],
])
def test_what_numpy_saves_reads_back_equal(array):
    data = saved(array)
    stream = io.BytesIO(data)
    values = read_payload(stream, read_npy_header(stream, len(data)))
    assert values.dtype == np.asarray(array).dtype and values.shape == np.shape(array)
    np.testing.assert_array_equal(values, array)
    assert values.flags.writeable


@pytest.mark.parametrize(("data", "message"), [
    (header((2**20, 2**20)) + bytes(16), r"declares shape \(1048576, 1048576\) of float32"),
    (header((-3, 4)) + bytes(48), r"negative dimension, shape \(-3, 4\)"),
    (header((2, 2)) + bytes(15), "but holds"),
    (header((2, 2)) + bytes(17), "but holds"),
    (header((2,), "|O") + bytes(16), "holds object values"),
    (header((2,), "<U3") + bytes(24), "not numbers"),
    (header((2,), [("a", "<f4")]) + bytes(8), "not numbers"),
    (b"\x93NUMPY\x03\x00" + bytes(60), "format version 3.0"),
    (b"\x93NUMPY", "ends inside its .npy header"),
    (b"\x93NUMPY\x01\x00\xff\x7f{'descr'", "damaged .npy header"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__('os')}", "damaged .npy header"),
    (b"PK\x03\x04" + bytes(30), "is an .npz archive"),
    (b"hello world", "is not a .npy array"),
    (b"", "is not a .npy array"),
])
def test_a_lying_or_foreign_header_is_refused_before_allocation(data, message):
    with pytest.raises(BadArrayFile, match=message):
        read_npy_header(io.BytesIO(data), len(data))


def test_a_version_2_header_is_read():
    data = header((3,), version=(2, 0)) + np.arange(3, dtype="<f4").tobytes()
    stream = io.BytesIO(data)
    np.testing.assert_array_equal(read_payload(stream, read_npy_header(stream, len(data))),
                                  [0, 1, 2])


def test_a_file_that_shrinks_after_its_header_is_refused():
    data = header((4,)) + bytes(16)
    stream = io.BytesIO(data)
    checked = read_npy_header(stream, len(data))
    short = io.BytesIO(data[:-4])
    short.seek(stream.tell())
    with pytest.raises(BadArrayFile, match="ends 4 bytes before its array does"):
        read_payload(short, checked)


def test_open_npy_refuses_a_folder_and_names_nothing_it_did_not_read(tmp_path):
    with pytest.raises(BadArrayFile, match="is a directory"), open_npy(tmp_path):
        pass
    (tmp_path / "a.npy").write_bytes(saved(np.ones((2, 2), np.float32)))
    with open_npy(tmp_path / "a.npy") as (handle, checked):
        assert checked.shape == (2, 2) and checked.nbytes == 16
        np.testing.assert_array_equal(read_payload(handle, checked), np.ones((2, 2)))


def npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_an_npz_as_numpy_writes_it_reads_back():
    buffer = io.BytesIO()
    np.savez(buffer, **{"param/W": np.ones((2, 3), np.float32), "optim/t": np.int64(4)})
    arrays = read_npz(buffer.getvalue())
    assert sorted(arrays) == ["optim/t", "param/W"] and arrays["optim/t"] == 4


@pytest.mark.parametrize(("data", "message"), [
    (npz({"a.npy": header((2**30,)) + bytes(8)}), r"member 'a.npy' declares shape"),
    (npz({"a.npy": saved(np.ones(3))}, zipfile.ZIP_DEFLATED), "is not a stored .npy array"),
    (npz({"a.txt": b"hi"}), "is not a stored .npy array"),
    (npz({"a.npy": saved(np.ones(3))})[:-30], "not an .npz archive|damaged archive"),
    (b"not a zip", "is not an .npz archive"),
])
def test_a_damaged_archive_is_refused(data, message):
    with pytest.raises(BadArrayFile, match=message):
        read_npz(data)


@pytest.mark.parametrize("both", [False, True])
def test_a_member_whose_zip_entry_lies_about_its_size_is_refused_unallocated(both):
    """The zip directory's sizes are the archive's word, not its bytes: a 300-byte
    archive stating a 4 GiB member once reached an allocation of that size."""
    data = bytearray(npz({"a.npy": header((4,)) + bytes(16)}))
    lie = (2**32 - 16).to_bytes(4, "little")
    for signature, sizes in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        at = data.index(signature)
        data[at + sizes + 4:at + sizes + 8] = lie  # the uncompressed size
        if both:
            data[at + sizes:at + sizes + 4] = lie  # and the stored size
    said = ("declares 4,294,967,280 bytes; the whole archive holds" if both else
            "is stored as 144 bytes but declares 4,294,967,280")
    with pytest.raises(BadArrayFile, match=f"member 'a.npy' {said}"):
        read_npz(bytes(data))


@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize("dtype", ["<f8", ">f4", "|u1", "<f2"])
def test_read_into_converts_piece_by_piece_in_either_order(fortran, dtype):
    from lamina.arrayfiles import read_into

    array = np.arange(5 * 3 * 4, dtype=dtype).reshape(5, 3, 4)
    array = np.asfortranarray(array) if fortran else array
    data = saved(array)
    stream = io.BytesIO(data)
    checked = read_npy_header(stream, len(data))
    assert checked.fortran == fortran
    out, seen = np.empty(checked.shape, np.float32), []
    read_into(stream, checked, out, check=seen.append, values=7)  # pieces of 1 or 2 rows
    np.testing.assert_array_equal(out, array.astype(np.float32))
    assert len(seen) > 2 and all(piece.dtype == np.dtype(dtype) for piece in seen)
