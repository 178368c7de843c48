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
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .lookup import fetch
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
) -> Dataset:
    """Find (or download) and load a dataset; ``limit`` keeps the first N training samples.

    ``name`` is ``"mnist"``, ``"fashion-mnist"`` or a :class:`DatasetSpec`. See
    :func:`lamina.data.fetch` for ``data_dir``, ``download`` and ``report``.
    The test set is never limited.
    """
    spec = get_spec(name)
    files = fetch(spec, data_dir=data_dir, download=download, report=report)
    train_images, train_labels = _read_pair(spec, files, "train")
    test_images, test_labels = _read_pair(spec, files, "test")
    if limit is not None:
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
    spec: DatasetSpec, files: dict[str, Path], part: str
) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = files[f"{part}_images"], files[f"{part}_labels"]
    images = read_idx(images_path, magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=LABELS_MAGIC)
    if images.shape[1:] != spec.image_shape:
        raise DataError(
            f"{images_path}: expected {spec.name} images of {spec.image_shape[0]} x "
            f"{spec.image_shape[1]} pixels, received shape {images.shape}; the file belongs "
            f"to another dataset: replace it with the canonical {spec.files[f'{part}_images']}"
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
            f"{int(labels.max())}; replace it with the canonical {spec.files[f'{part}_labels']}"
        )
    return images, labels


def _to_float(images: np.ndarray) -> np.ndarray:
    x = np.divide(images, np.float32(255), dtype=np.float32)
    return x.reshape(len(images), 1, *images.shape[1:])


def split(
    x: np.ndarray, y: np.ndarray, *, fraction: float = 0.1, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split ``(x, y)`` into ``(train, validation)`` pairs at random.

    ``round(fraction * N)`` samples, picked by a permutation drawn from ``rng``, go
    to validation; both parts keep the original order of their samples.
    ``fraction = 0`` gives an empty validation set. x: (N, ...), y: (N, ...).
    """
    n = len(x)
    if len(y) != n:
        raise DataError(f"expected as many targets as inputs, received {len(y)} and {n}")
    if not 0 <= fraction < 1:
        raise ConfigError([ConfigIssue(
            "validation_fraction", f"expected 0 <= fraction < 1, received {fraction}"
        )])
    n_val = round(fraction * n)
    if n - n_val < 1 or (fraction > 0 and n_val == 0):
        raise ConfigError([ConfigIssue(
            "validation_fraction",
            f"a fraction of {fraction} of {n} samples leaves {n_val} for validation and "
            f"{n - n_val} for training; each needs at least one (use 0 for no validation)",
        )])
    perm = rng.permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
