"""MNIST-format datasets: an IDX reader, dataset lookup and checksummed download,
and loading into float32 arrays with a seeded validation split. Re-exports only."""

from .datasets import Dataset, load_dataset, split, split_sizes
from .idx import IDX_TYPES, IMAGES_MAGIC, LABELS_MAGIC, decode_idx, read_idx
from .lookup import ENV_VAR, download_dir, fetch, search_dirs, verify_md5
from .specs import DATASETS, FASHION_MNIST, MNIST, ROLES, DatasetSpec, get_spec

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "FASHION_MNIST",
    "IDX_TYPES",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MNIST",
    "ROLES",
    "Dataset",
    "DatasetSpec",
    "decode_idx",
    "download_dir",
    "fetch",
    "get_spec",
    "load_dataset",
    "read_idx",
    "search_dirs",
    "split",
    "split_sizes",
    "verify_md5",
]
