"""``lamina predict``: a trained run's predictions for image files and ``.npy`` arrays.

Each file becomes one or more samples of the network's input shape (C, H, W):

- **PNG, JPEG** and nothing else, whatever a file is called, of at most
  :data:`lamina.images.MAX_PIXELS` (:mod:`lamina.images` opens them with Pillow, the
  optional extra ``lamina[image]``): turned upright as its EXIF orientation says,
  16-bit pixels scaled to 8, a transparent background put on white, converted to
  grayscale for a one-channel network (RGB for three channels), resized to (W, H) when its size
  differs, scaled from 0-255 to [0, 1], and, for one channel, inverted when its border
  is light (``--invert`` overrides): the training images (MNIST, Fashion-MNIST) are
  light on a dark background, while a digit drawn or photographed is usually dark on
  light. What was done to each file is reported.
- **.npy**: one sample, (H, W) for a one-channel network or (C, H, W), or a batch
  (N, C, H, W) or, for one channel, (N, H, W); floats in [0, 1] as lamina loads images,
  or uint8 pixels 0-255 (scaled). Nothing of the file is read past its header until the
  header has been checked (lamina.arrayfiles), and one command reads at most
  :data:`MAX_SAMPLES` samples.

No centring or cropping is done: an image should show one object filling most of the
frame, as the training images do.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .arrayfiles import BadArrayFile, NpyHeader, open_npy, read_into
from .config.files import shown
from .errors import LaminaError
from .images import ImageRefused, open_image

#: the most samples one lamina predict reads, over all its files (100,000 MNIST images
#: are 314 MB of float32; Model.predict takes larger sets in batches)
MAX_SAMPLES = 100_000


class InputFileError(LaminaError):
    """A file given to ``lamina predict`` cannot be read as the network's input."""


def read_samples(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None], *,
                 invert: str = "auto") -> list[tuple[str, np.ndarray]]:
    """(label, sample) pairs from one file, each sample of ``input_shape`` in float32.
    ``invert`` (images of one channel): "auto" inverts a light-bordered image, "always"
    and "never" do as they say."""
    labels, samples = read_file(path, input_shape, note, invert=invert)
    return list(zip(labels, samples, strict=True))


def read_file(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None], *,
              invert: str = "auto") -> tuple[list[str], np.ndarray]:
    """The samples of one file as one float32 array (k, *input_shape), with a label each."""
    path = Path(path)
    try:
        found, regular = os.path.lexists(path), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the system, a NUL byte
        raise InputFileError(f"{shown(path)} cannot be a file here "
                             f"({getattr(exc, 'strerror', None) or exc}); give image files "
                             "(PNG, JPEG) or .npy arrays") from None
    if not regular:
        what = "does not exist" if not found else "is not a regular file"
        raise InputFileError(f"{shown(path)} {what}; give image files (PNG, JPEG) or .npy "
                             "arrays")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, input_shape, note)
    return [str(path)], _read_image(path, input_shape, note, invert)[None]


def _read_image(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None],
                invert: str) -> np.ndarray:
    try:
        import PIL  # noqa: F401  (lamina.images imports it; said here with the fix)
    except ImportError:
        raise InputFileError("reading images needs Pillow: pip install 'lamina[image]' (or "
                             "pip install Pillow); .npy arrays need nothing more") from None
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise InputFileError(f"this network takes samples of shape {input_shape}, not images "
                             "of one or three channels; give .npy arrays of that shape")
    channels, height, width = input_shape
    try:
        image, warned = open_image(path)
    except ImageRefused as exc:
        raise InputFileError(str(exc)) from None
    done = [f"{image.width}x{image.height} {image.format} {image.mode}"]
    handed = [image]  # handed over, so the decoded image is freed as soon as it is converted
    del image
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # said in the file's note, not as raw warnings
        try:
            pixels = _converted(handed, done, channels == 1, (width, height))
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot convert {shown(path)} to the network's input "
                                 f"({exc}); give an 8- or 16-bit grayscale or RGB PNG, or a "
                                 "JPEG") from None
    warned += [" ".join(str(w.message).split()) for w in caught]
    if channels == 1:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        if invert == "always" or (invert == "auto" and border.mean() > 0.5):
            pixels = 1.0 - pixels
            done.append("inverted (dark on light; the training images are light on dark)"
                        if invert == "auto" else "inverted (--invert always)")
        sample = pixels[None]
    else:
        sample = pixels.transpose(2, 0, 1)
    done += [f"the imaging library warned: {text}" for text in dict.fromkeys(warned)]
    note(f"{shown(path)}: {', '.join(done)}")
    return np.ascontiguousarray(sample)


def _converted(handed: list, done: list[str], gray: bool, size: tuple[int, int]
               ) -> np.ndarray:
    """The pixels of the image in ``handed`` (taken from it) in [0, 1]: upright, on white,
    grayscale (or RGB) and of ``size`` (W, H); each thing done is appended to ``done``.
    Each step lets go of the step before, so a 40-megapixel image costs a few copies of
    one channel beyond itself."""
    from PIL import Image, ImageOps

    image = handed.pop()
    try:
        orientation = image.getexif().get(0x0112, 1)  # the EXIF orientation tag
    except (OSError, ValueError, SyntaxError):
        orientation = 1
        done.append("EXIF data unreadable, orientation not applied")
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
        done.append("turned as its EXIF orientation says")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: keep the precision
        wide = np.asarray(image, dtype=np.float32)
        del image
        wide /= max(float(wide.max()), 1.0)  # in place: one copy of the pixels
        wide *= 255
        image = Image.fromarray(np.rint(wide, out=wide).astype(np.uint8))
        del wide
        done.append("16-bit scaled to 8")
    mode = "L" if gray else "RGB"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # a drawing with a transparent background: put it on white, as it is seen,
        # c * alpha + white * (1 - alpha), in the colours the network takes
        coloured = image.mode not in ("L", "LA")
        if image.mode not in ("RGBA", "LA"):  # a palette's or a colour key's transparency
            image = image.convert("RGBA")
        if image.mode != ("LA" if gray else "RGBA"):
            image = image.convert("LA" if gray else "RGBA")
        alpha, colour = image.getchannel("A"), image.convert(mode)
        image = Image.new(mode, image.size, "white")
        image.paste(colour, mask=alpha)
        del alpha, colour
        done.append("transparency on white")
        if gray and coloured:
            done.append("grayscale")
    if image.mode != mode:
        image = image.convert(mode)
        done.append("grayscale" if gray else "RGB")
    if image.size != size:
        # a box reduction first, to within 3x of the size: a 40-megapixel strip would
        # otherwise need a Lanczos kernel of millions of taps per pixel
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        done.append(f"resized to {size[0]}x{size[1]}")
    return np.asarray(image, dtype=np.float32) / 255.0


def _read_npy(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None]
              ) -> tuple[list[str], np.ndarray]:
    try:
        with open_npy(path) as (handle, header):
            return _npy_samples(path, handle, header, input_shape, note)
    except BadArrayFile as exc:
        raise InputFileError(f"{shown(path)} {exc}; save one array with numpy.save") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {shown(path)} ({exc.strerror or exc})") from None


def _npy_samples(path: Path, handle: BinaryIO, header: NpyHeader,
                 input_shape: tuple[int, ...], note: Callable[[str], None]
                 ) -> tuple[list[str], np.ndarray]:
    """The samples of the open ``.npy`` file ``handle``, read only once its header fits."""
    shape = header.shape
    one_channel = input_shape[:1] == (1,)
    if shape == input_shape or (one_channel and shape == input_shape[1:]):
        batch, single = (1, *input_shape), True
    elif len(shape) == len(input_shape) + 1 and shape[1:] == input_shape:
        batch, single = shape, False
    elif one_channel and len(shape) == len(input_shape) and shape[1:] == input_shape[1:]:
        batch, single = (shape[0], *input_shape), False  # (N, H, W)
    else:
        dims = ", ".join(map(str, input_shape))
        raise InputFileError(f"{shown(path)} holds an array of shape {shape}; this network "
                             f"takes one sample of shape {input_shape} or a batch (N, "
                             f"{dims})")
    if not batch[0]:
        raise InputFileError(f"{shown(path)} holds no samples (shape {shape})")
    if batch[0] > MAX_SAMPLES:
        raise InputFileError(f"{shown(path)} holds {batch[0]:,} samples; lamina predict "
                             f"reads at most {MAX_SAMPLES:,}: split it, or use "
                             "lamina.Model.predict")
    if header.dtype != np.uint8 and header.dtype.kind != "f":
        raise InputFileError(f"{shown(path)} holds {header.dtype} values; give floats in "
                             "[0, 1] (as lamina loads images) or uint8 pixels 0-255")
    def finite(piece: np.ndarray) -> None:
        # checked in the file's own precision: a cast of 1e300 to float32 would overflow
        top = float(np.finfo(np.float32).max)
        if piece.size and (not np.all(np.isfinite(piece)) or piece.max() > top
                           or piece.min() < -top):
            raise InputFileError(f"{shown(path)} holds NaN or infinite values (or values "
                                 "beyond float32's range); give finite numbers in [0, 1]")

    # Only now, with the shape and size checked, are the values read: straight into
    # float32, a piece at a time (a float64 file is never held whole beside them).
    samples = np.empty(header.shape, np.float32)
    read_into(handle, header, samples, check=None if header.dtype == np.uint8 else finite)
    samples = samples.reshape(batch)
    if header.dtype == np.uint8:
        samples /= 255.0
        note(f"{shown(path)}: uint8 pixels scaled to [0, 1]")
    return ([str(path)] if single else [f"{path}[{i}]" for i in range(len(samples))]), samples


def predict_files(run_dir: str | Path, files: Sequence[str | Path], registry, *,
                  weights: str | None = None, note: Callable[[str], None] | None = None,
                  invert: str = "auto") -> dict[str, Any]:
    """Predictions of a run for ``files``: every file is read (and checked) first.
    ``note`` receives what was done to each file (default: stderr)."""
    from .data.specs import DATASETS
    from .model import Model
    from .training.callbacks import to_stderr

    note = note if note is not None else to_stderr
    model = Model.load(run_dir, weights=weights, registry=registry)
    input_shape = tuple(model.config.input_shape)
    labels: list[str] = []
    arrays: list[np.ndarray] = []
    for path in files:
        found, array = read_file(Path(path), input_shape, note, invert=invert)
        labels += found
        arrays.append(array)
        if len(labels) > MAX_SAMPLES:
            raise InputFileError(f"the files hold more than {MAX_SAMPLES:,} samples; lamina "
                                 "predict reads at most that many at once: give fewer, or "
                                 "use lamina.Model.predict")
    # file by file: the samples are never copied into one batch
    probabilities = np.concatenate([model.predict(array) for array in arrays])
    del arrays
    spec = DATASETS.get(model.config.training.dataset)
    classes = probabilities.shape[1]
    names = (list(spec.class_names) if spec is not None and len(spec.class_names) == classes
             else [str(i) for i in range(classes)])
    # mse (on one-hot rows) predicts a score per class, not a probability: the class is
    # still the largest, but its number is named for what it is. binary_cross_entropy's
    # sigmoid outputs are probabilities (of each output being 1).
    one, every = ("output", "outputs") if "values" in model.loss.traits.targets \
        else ("probability", "probabilities")
    rows = []
    for label, p in zip(labels, probabilities, strict=True):
        best = int(np.argmax(p))
        rows.append({"file": label, "class": best, "class_name": names[best],
                     one: float(p[best]), every: [float(v) for v in p]})
    return {"run_dir": str(run_dir), "weights": model.weights, "predictions": rows}


def format_predictions(result: dict[str, Any]) -> str:
    one = "probability" if all("probability" in r for r in result["predictions"]) \
        else "output"
    rows = [("file", "class", one)]
    rows += [(r["file"], r["class_name"], f"{r[one]:.4f}") for r in result["predictions"]]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{result['run_dir']} ({result['weights']})"]
    lines += ["  ".join((row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                         row[2].rjust(widths[2]))).rstrip() for row in rows]
    return "\n".join(lines)
