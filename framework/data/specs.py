"""What a named dataset is: its four IDX files, their checksums, its mirrors, its classes.

The built-in specs are plain data so that tests (and users with a private copy of a
dataset) can build their own :class:`DatasetSpec` with other checksums and
``file://`` mirrors and hand it to :func:`lamina.data.load_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError, ConfigIssue

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of four IDX files: train/test images and labels.

    ``files`` maps each role in :data:`ROLES` to its canonical file name; ``md5``
    maps each of those file names to the MD5 of that exact (compressed) file, which
    a download must match. ``content_sha256`` maps a file name to the SHA-256 of its
    decompressed IDX content: a copy found on disk must match it, however it is
    compressed (a dataset package may recompress the files, a user may unpack them);
    a file with no such checksum is checked by its IDX structure and shape. ``samples``
    is the number of (train, test) samples, when fixed. ``mirrors`` are base URLs
    tried in order; a file's URL is ``mirror + "/" + file name``.
    """

    name: str
    files: dict[str, str]
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)
    content_sha256: dict[str, str] = field(default_factory=dict)
    samples: tuple[int, int] | None = None
    description: str = field(default="", compare=False)

    def shape_of(self, role: str) -> tuple[int, ...] | None:
        """The array shape the file of ``role`` holds, when the spec fixes it."""
        if self.samples is None:
            return None
        n = self.samples[0 if role.startswith("train") else 1]
        return (n, *self.image_shape) if role.endswith("images") else (n,)

    def __post_init__(self) -> None:
        if sorted(self.files) != sorted(ROLES):
            raise ValueError(f"DatasetSpec.files needs the roles {ROLES}, got {sorted(self.files)}")
        missing = [f for f in self.files.values() if f not in self.md5]
        if missing:
            raise ValueError(f"DatasetSpec.md5 has no checksum for {missing}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


MNIST = DatasetSpec(
    name="mnist",
    files=MNIST_FILES,
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "http://yann.lecun.com/exdb/mnist",
    ),
    class_names=tuple(str(digit) for digit in range(10)),
    # SHA-256 of the decompressed IDX files (the canonical .gz files above, gunzipped).
    content_sha256={
        "train-images-idx3-ubyte.gz":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte.gz":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte.gz":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte.gz":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    samples=(60_000, 10_000),
    description="handwritten digits 0-9 (LeCun, Cortes and Burges)",
)

# Checksums as published in the README of github.com/zalandoresearch/fashion-mnist.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    files=MNIST_FILES,
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ),
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    # No content checksums yet (no copy was at hand to compute them from): a copy other
    # than a downloaded one is checked by its IDX structure and shape.
    samples=(60_000, 10_000),
    description="Zalando article images in 10 classes, a drop-in replacement for MNIST",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The spec of a named dataset; a :class:`DatasetSpec` is passed through."""
    if isinstance(name, DatasetSpec):
        return name
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError(
            [ConfigIssue("dataset", f"unknown dataset {name!r}; known datasets: {known}")]
        ) from None
