"""Damaged IDX files and run directories: a DataError or CheckpointError with a message,
nothing allocated beyond the file, no file changed.

IDX bytes are built here with ``struct`` (not by lamina), then cut, extended, flipped
and re-headed; a run directory is trained once (synthetic data, no dataset needed) and
each example damages a copy of it.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, no_hang
from hypothesis import given
from hypothesis import strategies as st

from lamina.data.idx import IMAGES_MAGIC, read_idx_verified
from lamina.errors import DataError, LaminaError
from lamina.registry import load_registry
from lamina.training import load_trained, resume_run

IMAGES = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
VALID = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", *IMAGES.shape) + IMAGES.tobytes()


@st.composite
def damaged_idx(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "extend", "header", "dims"]))
        if action == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif action == "extend":
            data += draw(st.binary(max_size=40))
        elif action == "header" and len(data) >= 4:
            data[2:4] = draw(st.binary(min_size=2, max_size=2))
        elif action == "dims" and len(data) >= 16:
            data[4:16] = struct.pack(">3I", *draw(st.tuples(*[st.integers(0, 2**32 - 1)] * 3)))
    compress = draw(st.sampled_from(["raw", "gzip", "gzip-then-cut"]))
    if compress != "raw":
        data = bytearray(gzip.compress(bytes(data), mtime=0))
        if compress == "gzip-then-cut":
            del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@FUZZ
@given(data=damaged_idx(), expect_shape=st.booleans())
def test_a_damaged_idx_file_is_read_or_refused_with_a_data_error(data, expect_shape,
                                                                  tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "images"
    path.write_bytes(data)
    with no_hang():
        try:
            array, digest = read_idx_verified(path, magic=IMAGES_MAGIC,
                                              shape=IMAGES.shape if expect_shape else None)
        except DataError as exc:
            assert str(path) in str(exc)
            return
    # Accepted: then the file really is an IDX array of that size (a flip in the pixels).
    assert array.nbytes <= len(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    assert len(digest) == 64


@st.composite
def npy_files(draw):
    """.npy files whose header declares any shape (negative, huge, empty) of any dtype,
    followed by any number of bytes, sometimes with a byte of the header changed."""
    shape = tuple(draw(st.lists(st.one_of(st.integers(-3, 40), st.integers(-2**63, 2**63 - 1)),
                                max_size=5)))
    descr = draw(st.sampled_from(["<f4", ">f8", "<f2", "|u1", "<i8", "|b1", "|O", "<U2",
                                  "<c8", "|V4"]))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order":
                                                  draw(st.booleans()), "shape": shape})
    data = bytearray(header.getvalue())
    if draw(st.booleans()):
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data) + draw(st.binary(max_size=3200))


@FUZZ
@given(data=npy_files())
def test_any_npy_file_gives_samples_or_an_input_error(data, tmp_path_factory, recwarn):
    from lamina.predict import InputFileError, read_samples

    recwarn.clear()  # one recorder serves every example: each is judged on its own warnings
    path = tmp_path_factory.mktemp("npy") / "x.npy"
    path.write_bytes(data)
    with no_hang():
        try:
            samples = read_samples(path, (1, 28, 28), lambda _: None)
        except InputFileError as exc:
            assert str(path) in str(exc)
            return
        finally:
            assert not recwarn.list, [str(w.message) for w in recwarn.list]
    # Accepted: the samples were in the file (uint8 and float16 store fewer bytes each).
    assert samples and len(samples) * 784 <= len(data)


@FUZZ
@given(width=st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)),
       height=st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)),
       colour=st.sampled_from([0, 2, 3, 4, 6]), depth=st.sampled_from([1, 8, 16]),
       pixels=st.binary(max_size=512))
def test_any_declared_png_size_is_decoded_within_budget_or_refused(width, height, colour, depth,
                                                                   pixels, tmp_path_factory,
                                                                   recwarn):
    """PNG headers declaring any size over a few bytes of pixels: either an image within
    the pixel budget is read, or an InputFileError says why; never a raw warning."""
    from lamina.images import MAX_PIXELS
    from lamina.predict import InputFileError, read_samples

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    path = tmp_path_factory.mktemp("png") / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour,
                                                  0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))
    with no_hang():
        try:
            [(_, sample)] = read_samples(path, (1, 28, 28), lambda _: None)
        except InputFileError as exc:
            assert str(path) in str(exc)
            return
        finally:
            assert not recwarn.list, [str(w.message) for w in recwarn.list]
    assert 0 < width * height <= MAX_PIXELS and sample.shape == (1, 28, 28)


REGISTRY = load_registry(load_entry_points=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synthetic_run) -> Path:
    return synthetic_run(tmp_path_factory.mktemp("trained"), epochs=1, batch_size=64)


FILES = ["checkpoint.json", "config.json", "checkpoint-e0001.npz", "metrics.json"]


#: where checkpoint.json and config.json hold integers, and integers at the edges of
#: what a reader could mistake them for (int64, uint64, a C ssize_t, far beyond)
INTEGER_FIELDS = [("checkpoint.json", ("epoch",)), ("checkpoint.json", ("extra", "best_epoch")),
                  ("checkpoint.json", ("extra", "stale_epochs")),
                  ("checkpoint.json", ("history", 0, "epoch")),
                  ("checkpoint.json", ("best", "epoch")),
                  ("checkpoint.json", ("rng_state", "uinteger")),
                  ("checkpoint.json", ("rng_state", "state", "inc")),
                  ("config.json", ("training", "epochs")), ("config.json", ("training", "seed")),
                  ("config.json", ("training", "batch_size"))]
EDGES = st.one_of(st.sampled_from([-2**63 - 1, -2**63, -1, 0, 1, 2, 2**31 - 1, 2**31,
                                   2**63 - 1, 2**63, 2**64, 10**30, 10**4000]),
                  st.integers(-2**70, 2**70))


@st.composite
def damage(draw):
    if draw(st.integers(0, 3)) == 0:
        name, where = draw(st.sampled_from(INTEGER_FIELDS))
        return name, "integer", where, draw(EDGES)
    name = draw(st.sampled_from(FILES))
    action = draw(st.sampled_from(["flip", "cut", "extend", "replace", "delete"]))
    return name, action, draw(st.integers(0, 10**9)), draw(st.binary(max_size=64))


@FUZZ
@given(change=damage())
def test_a_damaged_run_directory_is_refused_and_left_as_it_was(change, run_dir,
                                                             tmp_path_factory, monkeypatch):
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    copy = tmp_path_factory.mktemp("copy") / "run"
    shutil.copytree(run_dir, copy)
    name, action, at, blob = change
    path = copy / name
    data = bytearray(path.read_bytes())
    if action == "integer":  # ``at`` is where in the document, ``blob`` the integer
        document = json.loads(data)
        inner = document
        for key in at[:-1]:
            inner = inner[key]
        inner[at[-1]] = blob
        data = bytearray(json.dumps(document).encode())
        at = 0
    at = at % max(len(data), 1)
    if action == "flip" and data:
        data[at] ^= blob[0] if blob and blob[0] else 0x55
    elif action == "cut":
        del data[at:]
    elif action == "extend":
        data[at:at] = blob
    elif action == "replace":
        data = bytearray(blob)
    if action == "delete":
        path.unlink()
    else:
        path.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    with no_hang():
        for command in (lambda: load_trained(copy, REGISTRY),
                        lambda: resume_run(copy, REGISTRY, epochs=2, quiet=True,
                                           log=lambda _: None, download=False)):
            try:
                command()
            except LaminaError as exc:
                assert str(exc).strip()
    # No dataset is reachable, so resume_run always fails; every file is as it was.
    after = {p.name: p.read_bytes() for p in copy.iterdir()}
    assert after == before
