"""Opening an image file lamina is given: PNG or JPEG only, within a pixel budget.

An image is untrusted input. The imaging library (Pillow, the optional extra
``lamina[image]``) recognises dozens of formats by their content, whatever the file
is called, and some of them are handed to external programs (an EPS or PDF file to
Ghostscript). lamina therefore lets it try only the formats it documents,
:data:`FORMATS`: any other content is refused, however the file is named, and no
program is ever started. The size an image declares in its header is checked
against :data:`MAX_PIXELS` before a single pixel is decoded, so a small file
declaring a huge image (a decompression bomb) costs nothing. The file is opened
only if it is a regular file (a FIFO would block). Warnings the library raises while
reading (corrupt EXIF data, say) are returned with the image, for the caller to
report in its own words.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .config.files import NotARegularFile, open_regular_file, shown

#: the formats lamina reads (Pillow's names for them)
FORMATS = ("PNG", "JPEG")
#: the most pixels an image may declare: 40 megapixels (8000 x 5000, above a phone
#: camera's default 12); lamina predict's peak memory for one is below 1 GB
#: (docs/limits-and-guarantees.md)
MAX_PIXELS = 40_000_000


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
        try:
            image = Image.open(handle, formats=FORMATS)
        except Image.DecompressionBombError:
            raise _too_large(name, "many more") from None
        except UnidentifiedImageError:
            raise ImageRefused(f"{name} is not a {' or '.join(FORMATS)} image (its content, "
                               "whatever its name says); lamina reads no other image format: "
                               "convert it to PNG, or give a .npy array") from None
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


def _too_large(name: str, pixels: str) -> ImageRefused:
    return ImageRefused(f"{name} declares {pixels} pixels; lamina reads images of at most "
                        f"{MAX_PIXELS:,} pixels (8000x5000): scale it down or crop it first")


def _unreadable(name: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return (f"cannot read {name} as a {' or '.join(FORMATS)} image ({text}); give a PNG or "
            "JPEG file, or a .npy array")
