"""Load a named dataset as float32 arrays and split off a seeded validation set.

Shapes (N training samples, M test samples, H x W pixels, MNIST: 28 x 28)::

    train_x (N, 1, H, W) float32 in [0, 1]      train_y (N,) int64
    test_x  (M, 1, H, W) float32 in [0, 1]      test_y  (M,) int64

Pixels are ``uint8 / 255``. The channel axis is added so that the arrays fit the
channels-first layers directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ConfigIssue, DataError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_verified
from .lookup import fetch, remedy
from .specs import DatasetSpec, get_spec


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: train and test arrays, class names and the files read."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    files: dict[str, Path]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape, ``(1, H, W)``."""
        return tuple(self.train_x.shape[1:])


def load_dataset(
    name: str | DatasetSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    limit: int | None = None,
    report: Callable[[str], None] | None = None,
    parts: tuple[str, ...] = ("train", "test"),
) -> Dataset:
    """Find (or download) and load a dataset; ``limit`` keeps the first N training samples.

    ``name`` is ``"mnist"``, ``"fashion-mnist"`` or a :class:`DatasetSpec`. See
    :func:`lamina.data.fetch` for ``data_dir``, ``download`` and ``report``. ``parts``
    says which of ``"train"`` and ``"test"`` to load (the other's arrays are empty):
    evaluating needs no training files. The test set is never limited.
    """
    spec = get_spec(name)
    unknown = set(parts) - {"train", "test"}
    if unknown or not parts:
        raise ValueError(f"parts must name 'train' and/or 'test', received {parts!r}")
    roles = tuple(f"{part}_{kind}" for part in parts for kind in ("images", "labels"))
    files = fetch(spec, data_dir=data_dir, download=download, report=report, roles=roles)
    empty = (np.zeros((0, *spec.image_shape), np.uint8), np.zeros(0, np.uint8))
    train_images, train_labels = _read_pair(spec, files, "train", data_dir) \
        if "train" in parts else empty
    test_images, test_labels = _read_pair(spec, files, "test", data_dir) \
        if "test" in parts else empty
    if limit is not None and "train" in parts:
        if not 1 <= limit <= len(train_images):
            raise ConfigError([ConfigIssue(
                "limit",
                f"expected 1 <= limit <= {len(train_images)} (the {spec.name} training set "
                f"size), received {limit}",
            )])
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    return Dataset(
        name=spec.name,
        train_x=_to_float(train_images),
        train_y=train_labels.astype(np.int64),
        test_x=_to_float(test_images),
        test_y=test_labels.astype(np.int64),
        class_names=spec.class_names,
        files=files,
    )


def _read_pair(
    spec: DatasetSpec, files: dict[str, Path], part: str,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    images = _read(spec, files, f"{part}_images", IMAGES_MAGIC, data_dir)
    labels = _read(spec, files, f"{part}_labels", LABELS_MAGIC, data_dir)
    images_path, labels_path = files[f"{part}_images"], files[f"{part}_labels"]
    if images.shape[1:] != spec.image_shape:
        raise DataError(
            f"{images_path}: expected {spec.name} images of {spec.image_shape[0]} x "
            f"{spec.image_shape[1]} pixels, received shape {images.shape}; the file belongs "
            f"to another dataset: {remedy(images_path, spec.name, data_dir)}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds {len(labels)} labels but {images_path} holds "
            f"{len(images)} images; expected one label per image: the two files come from "
            f"different datasets or versions, replace them with the canonical files"
        )
    if len(labels) and labels.max() >= spec.num_classes:
        raise DataError(
            f"{labels_path}: expected labels 0..{spec.num_classes - 1}, received "
            f"{int(labels.max())}: {remedy(labels_path, spec.name, data_dir)}"
        )
    return images, labels


def _read(spec: DatasetSpec, files: dict[str, Path], role: str, magic: int,
          data_dir: str | os.PathLike[str] | None) -> np.ndarray:
    """One file of the dataset, checked by its content's checksum where the spec has one."""
    path, filename = files[role], spec.files[role]
    fix = remedy(path, spec.name, data_dir)
    array, digest = read_idx_verified(path, magic=magic, shape=spec.shape_of(role), remedy=fix)
    expected = spec.content_sha256.get(filename)
    if expected is not None and digest != expected:
        raise DataError(
            f"{path}: the IDX header is right ({array.dtype}, shape {array.shape}) but the "
            f"content differs from the canonical {filename}: its decompressed SHA-256 is "
            f"{digest}, expected {expected}, so the {role.split('_')[1]} themselves are "
            f"damaged or from another version (compression does not matter: recompressed and "
            f"unpacked copies of the right content are accepted); {fix}"
        )
    return array


def _to_float(images: np.ndarray) -> np.ndarray:
    x = np.divide(images, np.float32(255), dtype=np.float32)
    return x.reshape(len(images), 1, *images.shape[1:])


def split_sizes(n: int, fraction: float, name: str = "fraction") -> tuple[int, int]:
    """(training, validation) sample counts of a split of ``n`` samples, or a ConfigError
    naming the setting ``name`` when either would be empty."""
    if not 0 <= fraction < 1:
        raise ConfigError([ConfigIssue(
            name, f"expected 0 <= fraction < 1, received {fraction}"
        )])
    n_val = round(fraction * n)
    if n - n_val < 1 or (fraction > 0 and n_val == 0):
        raise ConfigError([ConfigIssue(
            name,
            f"a fraction of {fraction} of {n} samples leaves {n_val} for validation and "
            f"{n - n_val} for training; each needs at least one (use 0 for no validation)",
        )])
    return n - n_val, n_val


def split(
    x: np.ndarray, y: np.ndarray, *, fraction: float = 0.1, rng: np.random.Generator,
    name: str = "fraction",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split ``(x, y)`` into ``(train, validation)`` pairs at random.

    ``round(fraction * N)`` samples, picked by a permutation drawn from ``rng``, go
    to validation; both parts keep the original order of their samples.
    ``fraction = 0`` gives an empty validation set. x: (N, ...), y: (N, ...). ``name``
    is the setting a message names (``training.validation_split`` for a run); nothing
    is drawn from ``rng`` when the split cannot be made.
    """
    n = len(x)
    if len(y) != n:
        raise DataError(f"expected as many targets as inputs, received {len(y)} and {n}")
    _, n_val = split_sizes(n, fraction, name)
    perm = rng.permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
