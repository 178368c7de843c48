"""lamina.images: only PNG and JPEG are opened, within the pixel budget, starting nothing."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from lamina.images import MAX_PIXELS, ImageRefused, open_image

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
       b"newpath 0 0 moveto 28 28 lineto stroke\nshowpage\n")


def png_declaring(width: int, height: int, *, colour: int = 6) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` pixels, with a tiny IDAT: the
    file is small whatever it declares (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_a_png_and_a_jpeg_open_with_their_format(tmp_path):
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    png, warned = open_image(tmp_path / "a.png")
    assert (png.format, png.size, warned) == ("PNG", (28, 28), [])
    np.testing.assert_array_equal(np.asarray(png), pixels)
    jpeg, _ = open_image(tmp_path / "a.jpg")
    assert (jpeg.format, jpeg.mode) == ("JPEG", "L")


@pytest.mark.parametrize("content", [
    EPS,
    b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    b"BM" + bytes(60),
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
])
def test_other_formats_are_refused_whatever_the_file_is_called(tmp_path, content):
    path = tmp_path / "digit.png"
    path.write_bytes(content)
    with pytest.raises(ImageRefused, match="is not a PNG or JPEG image"):
        open_image(path)


def test_no_input_starts_a_program(tmp_path):
    """The security finding: an EPS named .png made the imaging library run Ghostscript.
    An audit hook in a fresh interpreter sees every process start."""
    for name, data in [("eps.png", EPS), ("eps.jpg", EPS), ("eps.eps", EPS),
                       ("bomb.png", png_declaring(12000, 12000)), ("junk.png", b"\x00" * 99)]:
        (tmp_path / name).write_bytes(data)
    script = textwrap.dedent(f"""
        import sys
        started = []
        def hook(event, args):
            if event.split(".")[0] in ("subprocess", "os") and any(
                    word in event for word in ("Popen", "system", "exec", "spawn", "fork")):
                started.append((event, args))
        sys.addaudithook(hook)
        from pathlib import Path
        from lamina.images import ImageRefused, open_image
        for path in sorted(Path({str(tmp_path)!r}).iterdir()):
            try:
                open_image(path)
            except ImageRefused:
                pass
        print(started)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("width", "height"), [(12000, 12000), (100_000_000, 1),
                                               (MAX_PIXELS + 1, 1), (2**31 - 1, 2**31 - 1)])
def test_an_image_over_the_pixel_budget_is_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(width, height))
    with pytest.raises(ImageRefused, match=f"at most {MAX_PIXELS:,} pixels") as refused:
        open_image(path)
    if width * height < 2 * Image.MAX_IMAGE_PIXELS:  # larger ones: Pillow stops them first
        assert f"{width}x{height}" in str(refused.value)


def test_an_image_at_the_budget_is_decoded(tmp_path):
    Image.new("L", (MAX_PIXELS // 5000, 5000)).save(tmp_path / "big.png")
    image, _ = open_image(tmp_path / "big.png")
    assert image.size == (MAX_PIXELS // 5000, 5000)


def corrupt_exif() -> bytes:
    """An EXIF block whose one entry (the orientation) points past its end."""
    entry = struct.pack("<HHII", 0x0112, 3, 1000, 20)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + bytes(4)


def test_the_library_s_warnings_come_back_as_text(tmp_path, recwarn):
    """Pillow warns about a corrupt EXIF block while it opens the file; lamina returns
    what it said, for its own note, and no raw warning escapes."""
    Image.new("L", (28, 28)).save(tmp_path / "a.jpg", exif=corrupt_exif())
    image, warned = open_image(tmp_path / "a.jpg")
    assert image.size == (28, 28) and warned and all(isinstance(w, str) for w in warned)
    assert not recwarn.list


def test_a_truncated_png_is_refused(tmp_path):
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRefused, match="cannot read .*a.png as a PNG or JPEG image"):
        open_image(tmp_path / "a.png")


def test_a_fifo_or_folder_is_refused_without_waiting(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ImageRefused, match="is not a regular file"):
        open_image(tmp_path / "fifo.png")
    with pytest.raises(ImageRefused, match="is a directory"):
        open_image(tmp_path)


def test_a_chunk_the_library_would_hold_whole_is_refused_unread(tmp_path):
    """An unknown PNG chunk is read whole by the imaging library (a sparse 1.5 GB one took
    3.1 GB and 12 s); a chunk other than pixel data beyond 16 MiB is refused first."""
    from lamina.images import MAX_PNG_CHUNK

    good = png_declaring(28, 28)
    path = tmp_path / "chunky.png"
    with open(path, "wb") as handle:
        handle.write(good[:33])  # the signature and the IHDR chunk
        handle.write((MAX_PNG_CHUNK + 1).to_bytes(4, "big") + b"zzXz")
        handle.truncate(33 + 8 + MAX_PNG_CHUNK + 1 + 4)  # sparse: nothing written
    with pytest.raises(ImageRefused, match=f"holds a 'zzXz' chunk of {MAX_PNG_CHUNK + 1:,} "
                                           "bytes"):
        open_image(path)


def test_an_image_file_over_the_size_bound_is_refused_unread(tmp_path):
    from lamina.images import MAX_FILE_BYTES

    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:
        handle.write(b"\xff\xd8\xff")
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse
    with pytest.raises(ImageRefused, match=f"is {MAX_FILE_BYTES + 1:,} bytes; lamina reads"):
        open_image(path)
