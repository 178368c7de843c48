"""``lamina predict``: a trained run's predictions for image files and ``.npy`` arrays.

Each file becomes one or more samples of the network's input shape (C, H, W):

- **PNG, JPEG** (and what else Pillow reads; Pillow is the optional extra
  ``lamina[image]``): turned upright as its EXIF orientation says, 16-bit pixels scaled
  to 8, a transparent background put on white, converted to grayscale for a
  one-channel network (RGB for three channels), resized to (W, H) when its size
  differs, scaled from 0-255 to [0, 1], and, for one channel, inverted when its border
  is light (``--invert`` overrides): the training images (MNIST, Fashion-MNIST) are
  light on a dark background, while a digit drawn or photographed is usually dark on
  light. What was done to each file is reported.
- **.npy**: one sample, (H, W) for a one-channel network or (C, H, W), or a batch
  (N, C, H, W) or, for one channel, (N, H, W); floats in [0, 1] as lamina loads images,
  or uint8 pixels 0-255 (scaled). The file is mapped, not read, until its header has
  been checked, and one command reads at most :data:`MAX_SAMPLES` samples.

No centring or cropping is done: an image should show one object filling most of the
frame, as the training images do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config.files import shown
from .errors import LaminaError

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
    path = Path(path)
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise InputFileError(f"{shown(path)} {what}; give image files (PNG, JPEG) or .npy "
                             "arrays")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, input_shape, note)
    return [(str(path), _read_image(path, input_shape, note, invert))]


def _read_image(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None],
                invert: str) -> np.ndarray:
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise InputFileError("reading images needs Pillow: pip install 'lamina[image]' (or "
                             "pip install Pillow); .npy arrays need nothing more") from None
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise InputFileError(f"this network takes samples of shape {input_shape}, not images "
                             "of one or three channels; give .npy arrays of that shape")
    channels, height, width = input_shape
    try:
        with Image.open(path) as image:
            image.load()
            done = [f"{image.width}x{image.height} {image.mode}"]
            if image.getexif().get(0x0112, 1) != 1:  # the EXIF orientation tag
                image = ImageOps.exif_transpose(image)
                done.append("turned as its EXIF orientation says")
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: keep the precision
                wide = np.asarray(image, dtype=np.float32)
                image = Image.fromarray(np.rint(wide / max(float(wide.max()), 1.0) * 255)
                                        .astype(np.uint8))
                done.append("16-bit scaled to 8")
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # a drawing with a transparent background: put it on white, as it is seen
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba).convert("RGB")
                done.append("transparency on white")
            mode = "L" if channels == 1 else "RGB"
            if image.mode != mode:
                image = image.convert(mode)
                done.append("grayscale" if mode == "L" else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.LANCZOS)
                done.append(f"resized to {width}x{height}")
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InputFileError(f"cannot read {shown(path)} as an image ({exc}); give a PNG or "
                             "JPEG file, or a .npy array") from None
    if channels == 1:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        if invert == "always" or (invert == "auto" and border.mean() > 0.5):
            pixels = 1.0 - pixels
            done.append("inverted (dark on light; the training images are light on dark)"
                        if invert == "auto" else "inverted (--invert always)")
        sample = pixels[None]
    else:
        sample = pixels.transpose(2, 0, 1)
    note(f"{shown(path)}: {', '.join(done)}")
    return np.ascontiguousarray(sample)


def _read_npy(path: Path, input_shape: tuple[int, ...], note: Callable[[str], None]
              ) -> list[tuple[str, np.ndarray]]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"cannot read {shown(path)} as a .npy array ({exc}); save it "
                             "with numpy.save") from None
    shape = tuple(array.shape)
    one_channel = input_shape[:1] == (1,)
    if shape == input_shape or (one_channel and shape == input_shape[1:]):
        samples, single = array.reshape(1, *input_shape), True
    elif len(shape) == len(input_shape) + 1 and shape[1:] == input_shape:
        samples, single = array, False
    elif one_channel and len(shape) == len(input_shape) and shape[1:] == input_shape[1:]:
        samples, single = array.reshape(shape[0], *input_shape), False  # (N, H, W)
    else:
        dims = ", ".join(map(str, input_shape))
        raise InputFileError(f"{shown(path)} holds an array of shape {shape}; this network "
                             f"takes one sample of shape {input_shape} or a batch (N, {dims})")
    if not len(samples):
        raise InputFileError(f"{shown(path)} holds no samples (shape {shape})")
    if len(samples) > MAX_SAMPLES:
        raise InputFileError(f"{shown(path)} holds {len(samples):,} samples; lamina predict "
                             f"reads at most {MAX_SAMPLES:,}: split it, or use "
                             "lamina.Model.predict")
    if array.dtype == np.uint8:
        samples = np.asarray(samples, dtype=np.float32) / 255.0
        note(f"{shown(path)}: uint8 pixels scaled to [0, 1]")
    elif array.dtype.kind == "f":
        samples = np.asarray(samples, dtype=np.float32)
        if not np.all(np.isfinite(samples)):
            raise InputFileError(f"{shown(path)} holds NaN or infinite values (or values "
                                 "beyond float32's range); give finite numbers in [0, 1]")
    else:
        raise InputFileError(f"{shown(path)} holds {array.dtype} values; give floats in "
                             "[0, 1] (as lamina loads images) or uint8 pixels 0-255")
    if single:
        return [(str(path), samples[0])]
    return [(f"{path}[{i}]", sample) for i, sample in enumerate(samples)]


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
    samples: list[tuple[str, np.ndarray]] = []
    for path in files:
        samples += read_samples(Path(path), input_shape, note, invert=invert)
        if len(samples) > MAX_SAMPLES:
            raise InputFileError(f"the files hold more than {MAX_SAMPLES:,} samples; lamina "
                                 "predict reads at most that many at once: give fewer, or "
                                 "use lamina.Model.predict")
    probabilities = model.predict(np.stack([sample for _, sample in samples]))
    spec = DATASETS.get(model.config.training.dataset)
    classes = probabilities.shape[1]
    names = (list(spec.class_names) if spec is not None and len(spec.class_names) == classes
             else [str(i) for i in range(classes)])
    rows = []
    for (label, _), p in zip(samples, probabilities, strict=True):
        best = int(np.argmax(p))
        rows.append({"file": label, "class": best, "class_name": names[best],
                     "probability": float(p[best]),
                     "probabilities": [float(v) for v in p]})
    return {"run_dir": str(run_dir), "weights": model.weights, "predictions": rows}


def format_predictions(result: dict[str, Any]) -> str:
    rows = [("file", "class", "probability")]
    rows += [(r["file"], r["class_name"], f"{r['probability']:.4f}")
             for r in result["predictions"]]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{result['run_dir']} ({result['weights']})"]
    lines += ["  ".join((row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                         row[2].rjust(widths[2]))).rstrip() for row in rows]
    return "\n".join(lines)
