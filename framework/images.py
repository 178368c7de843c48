"""Opening an image file lamina is given: PNG or JPEG only, within a pixel budget.

An image is untrusted input. The imaging library (Pillow, the optional extra
``lamina[image]``) recognises dozens of formats by their content, whatever the file
is called, and some of them are handed to external programs (an EPS or PDF file to
Ghostscript). lamina therefore lets it try only the formats it documents,
:data:`FORMATS`: any other content is refused, however the file is named, and no
program is ever started. The size an image declares in its header is checked
against :data:`MAX_PIXELS` before a single pixel is decoded, so a small file
declaring a huge image (a decompression bomb) costs nothing; the file's own size and,
in a PNG, every chunk the library would hold whole are bounded too. The file is
opened only if it is a regular file (a FIFO would block). Warnings the library raises while
reading (corrupt EXIF data, say) are returned with the image, for the caller to
report in its own words.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .config.files import NotARegularFile, open_regular_file, shown

#: the formats lamina reads (Pillow's names for them)
FORMATS = ("PNG", "JPEG")
#: the most pixels an image may declare: 40 megapixels (8000 x 5000, above a phone
#: camera's default 12); lamina predict's peak memory for one is well below 1 GB
#: (docs/limits-and-guarantees.md)
MAX_PIXELS = 40_000_000
#: the largest image file opened: a 40-megapixel RGBA PNG that does not compress at all
#: is 160 MB
MAX_FILE_BYTES = 256 << 20
#: the largest PNG chunk other than pixel data opened: the imaging library holds such a
#: chunk (a colour profile, text, an unknown chunk) whole in memory, twice over; real
#: ones are kilobytes
MAX_PNG_CHUNK = 16 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIXEL_CHUNKS = (b"IDAT", b"fdAT")  # streamed through the decoder, never held whole


class ImageRefused(ValueError):
    """A file that is not an image lamina reads; the message names the file and the fix."""


def open_image(path: Path) -> tuple[Any, list[str]]:
    """The decoded ``PIL.Image`` of the PNG or JPEG file ``path`` and the warnings raised
    while reading it. ImportError when Pillow is missing; ImageRefused for anything
    else that is not such an image within :data:`MAX_PIXELS`."""
    from PIL import Image, UnidentifiedImageError

    name = shown(path)
    try:
        handle = open_regular_file(path)
    except NotARegularFile as exc:
        raise ImageRefused(f"{name} {exc}; give an image file") from None
    except OSError as exc:
        raise ImageRefused(f"cannot open {name} ({exc.strerror or exc})") from None
    with handle, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise ImageRefused(f"{name} is {size:,} bytes; lamina reads image files of at most "
                               f"{MAX_FILE_BYTES:,} bytes: scale it down or save it as JPEG")
        _check_png_chunks(handle, name)
        try:
            image = Image.open(handle, formats=FORMATS)
        except Image.DecompressionBombError:
            raise _too_large(name, "many more") from None
        except UnidentifiedImageError:
            raise ImageRefused(f"{name} is not a {' or '.join(FORMATS)} image (by its content, "
                               "whatever its name says), or is a damaged one; lamina reads no "
                               "other image format: convert it to PNG, or give a .npy "
                               "array") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageRefused(_unreadable(name, exc)) from None
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _too_large(name, f"{width}x{height} = {width * height:,}")
        try:
            image.load()  # every pixel read now, while the file is open
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageRefused(_unreadable(name, exc)) from None
    notes = [" ".join(str(w.message).split()) for w in caught
             if not issubclass(w.category, Image.DecompressionBombWarning)]
    return image, list(dict.fromkeys(notes))


def _check_png_chunks(handle: Any, name: str) -> None:
    """Walk a PNG's chunks (lengths only, pixel data skipped) and refuse one the imaging
    library would hold whole in memory beyond :data:`MAX_PNG_CHUNK`. Not a PNG, or a
    damaged one: left for the library to refuse."""
    if handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE:
        while len(head := handle.read(8)) == 8:
            length, kind = int.from_bytes(head[:4], "big"), head[4:]
            if length > MAX_PNG_CHUNK and kind not in _PIXEL_CHUNKS:
                raise ImageRefused(
                    f"{name} holds a {kind.decode('latin-1')!r} chunk of {length:,} bytes; "
                    f"lamina reads PNG chunks other than pixel data of at most "
                    f"{MAX_PNG_CHUNK:,} bytes: save the image again without it")
            if kind == b"IEND":
                break
            handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    handle.seek(0)


def _too_large(name: str, pixels: str) -> ImageRefused:
    return ImageRefused(f"{name} declares {pixels} pixels; lamina reads images of at most "
                        f"{MAX_PIXELS:,} pixels (8000x5000): scale it down or crop it first")


def _unreadable(name: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return (f"cannot read {name} as a {' or '.join(FORMATS)} image ({text}); give a PNG or "
            "JPEG file, or a .npy array")
